"""Start-up: loader, C frame, sys.path, loading the app, K and F, exit codes."""

import json
import os
import signal
import struct
import subprocess

import pytest

from fakeshim import APPS, PYTHON, frame


def test_k_reports_version_executable_sys_path_and_import_time(spawn):
    worker = spawn(app="slow_import", paths=[APPS, "/nonexistent/extra"])
    ready = worker.ready()
    assert set(ready) == {"python", "executable", "sys_path", "import_ms"}
    version = subprocess.check_output([PYTHON, "-c", "import platform; print(platform.python_version())"])
    assert ready["python"] == version.decode().strip()
    assert os.path.samefile(ready["executable"], PYTHON)
    sys_path = ready["sys_path"].split("\n")
    assert sys_path[:2] == [APPS, "/nonexistent/extra"]
    assert "" not in sys_path
    assert 300 <= int(ready["import_ms"]) < 5000  # slow_import sleeps 0.3 s
    assert worker.close() == 0


@pytest.mark.parametrize("debug, reported", [(True, "1"), (False, "0")])
def test_k_reports_djangos_debug_once_its_settings_are_loaded(spawn, tmp_path, debug, reported):
    """check warns of DEBUG = True; a stand-in for django.conf here."""
    (tmp_path / "django").mkdir()
    (tmp_path / "django" / "__init__.py").write_text("")
    (tmp_path / "django" / "conf.py").write_text(
        f"class _Settings:\n    configured = True\n    DEBUG = {debug}\nsettings = _Settings()\n")
    (tmp_path / "djdebug.py").write_text(
        "import django.conf\n\ndef app(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [b'']\n")
    worker = spawn(app="djdebug:app", paths=[str(tmp_path)])
    assert worker.ready()["django_debug"] == reported
    assert worker.close() == 0


def test_a_missing_application_names_the_modules_own_callables(spawn, tmp_path):
    """wsgi_app = "site" for a module whose app is `app` (Flask's name)."""
    (tmp_path / "flaskish.py").write_text(
        "import json\nfrom json import dumps\nfrom os.path import join\n"
        "class Flask:\n    def __call__(self, environ, start_response):\n        return []\n"
        "app = Flask()\n\ndef helper():\n    pass\n")
    failed = spawn(app="flaskish", paths=[str(tmp_path)]).failed()
    assert failed["traceback"].rstrip().endswith(
        "AttributeError: module 'flaskish' has no attribute 'application'; its callables: app, "
        "helper (name one as wsgi_app = \"flaskish:NAME\")"), failed["traceback"]


def test_f_reports_version_executable_sys_path_and_the_traceback(spawn):
    """What `check` prints for an app that does not import: the interpreter
    and sys.path the import failed with."""
    worker = spawn(app="broken", paths=[APPS, "/nonexistent/extra"])
    failed = worker.failed()
    assert set(failed) == {"python", "executable", "sys_path", "traceback"}
    version = subprocess.check_output([PYTHON, "-c", "import platform; print(platform.python_version())"])
    assert failed["python"] == version.decode().strip()
    assert os.path.samefile(failed["executable"], PYTHON)
    sys_path = failed["sys_path"].split("\n")
    assert sys_path[:2] == [APPS, "/nonexistent/extra"]
    assert "" not in sys_path
    assert failed["traceback"].startswith("Traceback (most recent call last):")
    assert worker.wait() == 3


@pytest.mark.parametrize(
    "app, body",
    [
        ("testapps:application", b"default application"),
        ("onlyapp", b"module-only app"),
        ("testapps:Nested.inner.app", b"nested app"),
        ("pkg.sub:app", b"package app"),
    ],
)
def test_app_names(spawn, app, body):
    worker = spawn(app=app)
    worker.ready()
    result = worker.get()
    assert (result.code, result.body) == (0, body)


@pytest.mark.parametrize(
    "app, marker",
    [
        ("broken", "RuntimeError: broken-import-marker"),
        ("no_such_module_here", "ModuleNotFoundError: No module named 'no_such_module_here'"),
        ("testapps:missing", "AttributeError"),
        ("testapps:Nested.inner.missing", "AttributeError"),
        ("testapps:not_callable", "TypeError: testapps:not_callable is not callable: it is int"),
        ("exits_at_import", "SystemExit: 5"),
        ("", "no app configured: the config names neither an app nor a Django settings module"),
    ],
)
def test_load_failure_sends_F_and_exits_3(spawn, app, marker):
    worker = spawn(app=app)
    text = worker.failed()["traceback"]
    assert text.startswith("Traceback (most recent call last):")
    assert marker in text
    assert worker.read_frame() is None  # nothing after F
    assert worker.wait() == 3


def test_output_during_import_reaches_the_log(spawn):
    worker = spawn(app="broken")
    worker.start()
    assert worker.wait() == 3
    assert "broken-import-started" in worker.log()


def test_cwd_is_not_on_sys_path(spawn, tmp_path):
    # `python -c` puts '' (the cwd) first; only the configured paths count.
    (tmp_path / "cwd_only.py").write_text("application = None\n")
    worker = spawn(app="cwd_only", cwd=str(tmp_path))
    failed = worker.failed()
    assert "No module named 'cwd_only'" in failed["traceback"]
    assert "" not in failed["sys_path"].split("\n")


def test_process_state(spawn, tmp_path):
    worker = spawn(app="testapps:process_state", paths=[APPS, str(tmp_path)], cwd=str(tmp_path))
    worker.ready()
    state = json.loads(worker.get().body)
    assert state["sys_path"][:2] == [APPS, str(tmp_path)]
    assert "" not in state["sys_path"]
    assert state["cwd"] == str(tmp_path)
    assert state["argv"] == ["-c", "fcgi-shim-worker"]
    assert state["sigint_ignored"] and state["sigterm_default"]
    # Children of the app must not hold the frame pipes.
    assert not state["fd3_inheritable"] and not state["fd4_inheritable"]


def test_sigint_is_ignored_sigterm_is_not(serve):
    worker = serve("hello")
    worker.proc.send_signal(signal.SIGINT)
    assert worker.get().body == b"Hello, world!\n"
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == -signal.SIGTERM


def test_serves_many_requests_and_exits_0_on_eof(serve):
    worker = serve("hello")
    for rid in (1, 2, 65535, 0, 513):
        result = worker.get(rid=rid)  # the fake shim checks every frame's id
        assert (result.code, result.body) == (0, b"Hello, world!\n")
    assert worker.close() == 0
    assert worker.log() == ""


def test_config_frame_id_is_echoed(spawn):
    worker = spawn()
    worker.send_source()
    worker.send(frame("C", 4242, b"\0\0\0\0"))  # no pairs at all: no app
    kind, rid, _ = worker.read_frame()
    assert (kind, rid) == ("F", 4242)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x10\x00", struct.pack("<I", 1000) + b"print(1)"],
    ids=["nothing", "half-a-length", "half-the-source"],
)
def test_loader_exits_quietly_on_eof(spawn, data):
    worker = spawn()
    worker.send(data)
    assert worker.close() == 0
    assert worker.log() == ""


def test_eof_before_config_exits_0(spawn):
    worker = spawn()
    worker.send_source()
    assert worker.close() == 0
    assert worker.log() == ""


def test_eof_mid_request_exits(serve):
    worker = serve("hello")
    worker.send(frame("R", 1, b"\x01")[:5])
    assert worker.close() == 1
    assert "eof on fd 3 inside a frame" in worker.log()


def test_a_frame_other_than_C_first_is_a_protocol_error(spawn):
    worker = spawn()
    worker.send_source()
    worker.send(frame("R", 1, b"\x01\0\0\0\0"))
    assert worker.wait() == 1
    assert "the first frame is 'R', not C" in worker.log()


def test_a_frame_other_than_R_between_requests_is_a_protocol_error(serve):
    worker = serve("hello")
    worker.send(frame("I", 1, b"stray"))
    assert worker.wait() == 1
    assert "expected an R frame, got 'I'" in worker.log()


@pytest.mark.parametrize(
    "environ",
    [b"{z\x05short", b"{zAzb", b"[\x00\x00\x00\x00", b"\xff"],
    ids=["truncated-str", "unterminated-dict", "a-list", "not-marshal"],
)
def test_an_environ_that_does_not_decode_is_a_protocol_error(serve, environ):
    worker = serve("hello")
    worker.send(frame("R", 1, struct.pack("<BQI", 1, 0, len(environ)) + environ))
    assert worker.wait() == 1
    assert "an R frame's environ does not decode" in worker.log()


def test_an_environ_length_past_the_frame_is_a_protocol_error(serve):
    worker = serve("hello")
    worker.send(frame("R", 1, struct.pack("<BQI", 1, 0, 100) + b"{0"))
    assert worker.wait() == 1
    assert "an R frame's environ does not decode" in worker.log()


def test_sys_exit_in_a_request_ends_it_then_the_worker(serve):
    worker = serve("exits")
    result = worker.get()
    assert (result.code, result.out) == (1, b"")
    assert worker.wait() == 7
    assert "SystemExit: 7" in worker.log()
