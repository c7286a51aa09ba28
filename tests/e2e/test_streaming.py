"""1 GiB up and 1 GiB down through nginx and the shim, every byte checked,
in bounded memory (issue: "Streaming with bounded memory").

nginx streams both ways (fastcgi_request_buffering and fastcgi_buffering
off), so the shim sees the body as it arrives and the response as the app
makes it. The app (tests/apps/stream_check.py) hashes the upload and sends
a download made of distinct 64 KiB blocks; this test makes the same bytes,
hashes what it sent and what it got, and compares. The shim's peak RSS
(VmHWM, reset before each transfer) must stay at most 16 MiB, and the
Python worker must not grow with the body either.
"""

import hashlib
import os
import sys
from pathlib import Path

import pytest
import requests

from e2e_harness import Nginx, SpawnFcgi, chown_www, make_readable, shim_binary, toml_value

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))
import stream_check  # noqa: E402  (the app's own block generator)

GIB = 1 << 30
MIB = 1 << 20


def vm(pid, field):
    """A /proc/PID/status size field (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid):
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def worker_of(pid):
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(kids) == 1, kids
    return int(kids[0])


@pytest.fixture(scope="module")
def site(run_dir):
    root = run_dir / "streaming"
    web = root / "www"
    web.mkdir(parents=True)
    binary = web / "mysite.fcgi"
    binary.write_bytes(shim_binary().read_bytes())
    os.chmod(binary, 0o755)
    apps = Path(__file__).resolve().parents[1] / "apps"
    (web / "site.toml").write_text(
        f"python = {toml_value(sys.executable)}\n"
        f"search_path = [{toml_value(str(apps))}]\n"
        'wsgi_app = "stream_check:application"\n'
        f"log_file = {toml_value(str(root / 'shim.log'))}\n"
    )
    sock = root / "s" / "shim.sock"
    sock.parent.mkdir()
    chown_www(root)
    make_readable(root)
    nginx = Nginx(root / "nginx", f"""
server {{
    listen 80;
    location / {{
        include fastcgi_params;
        fastcgi_param SCRIPT_NAME "";
        fastcgi_param PATH_INFO $uri;
        fastcgi_pass unix:{sock};
        client_max_body_size 0;
        fastcgi_request_buffering off;
        fastcgi_buffering off;
        fastcgi_read_timeout 120s;
        fastcgi_send_timeout 120s;
    }}
}}
""")
    back = SpawnFcgi(binary, sock)
    back.start()
    nginx.start()
    yield nginx, back
    nginx.stop()
    back.stop()


def blocks(seed, size, digest):
    """The app's stream, fed to `digest` (a hashlib object) as it goes."""
    for piece in stream_check.stream(seed, size):
        digest.update(piece)
        yield piece


class Upload:
    """A request body of known length read from a generator: requests
    sends a file-like object with a length as Content-Length, block by
    block (a bare generator would go chunked)."""

    def __init__(self, pieces, size):
        self.pieces = pieces
        self.size = size
        self.rest = b""

    def __len__(self):
        return self.size

    def read(self, n=-1):
        while len(self.rest) < n or n < 0:
            piece = next(self.pieces, b"")
            if not piece:
                break
            self.rest += piece
        out, self.rest = (self.rest, b"") if n < 0 else (self.rest[:n], self.rest[n:])
        return out


def test_1_gib_upload_checksummed_by_the_app_in_bounded_memory(site):
    nginx, back = site
    url = f"http://127.0.0.1:{nginx.port}"
    assert requests.get(url + "/nothing").status_code == 404  # the worker is up
    worker = worker_of(back.pid)
    worker_rss = vm(worker, "VmRSS")
    reset_peak(back.pid)
    reset_peak(worker)
    sent = hashlib.sha256()
    r = requests.post(url + "/upload", data=Upload(blocks(7, GIB, sent), GIB), timeout=300)
    assert r.status_code == 200, r.text
    assert r.text == f"{sent.hexdigest()} {GIB}"
    assert vm(back.pid, "VmHWM") <= 16 * MIB, vm(back.pid, "VmHWM")
    assert vm(worker, "VmHWM") - worker_rss < 8 * MIB, (vm(worker, "VmHWM"), worker_rss)


def test_1_gib_download_checksummed_by_the_client_in_bounded_memory(site):
    nginx, back = site
    url = f"http://127.0.0.1:{nginx.port}"
    worker = worker_of(back.pid)
    worker_rss = vm(worker, "VmRSS")
    reset_peak(back.pid)
    reset_peak(worker)
    got, total = hashlib.sha256(), 0
    with requests.get(url + f"/download?bytes={GIB}&seed=11", stream=True, timeout=300) as r:
        assert r.status_code == 200
        for piece in r.iter_content(1 << 20):
            got.update(piece)
            total += len(piece)
    want = hashlib.sha256()
    for _ in blocks(11, GIB, want):
        pass
    assert (got.hexdigest(), total) == (want.hexdigest(), GIB)
    assert vm(back.pid, "VmHWM") <= 16 * MIB, vm(back.pid, "VmHWM")
    assert vm(worker, "VmHWM") - worker_rss < 8 * MIB, (vm(worker, "VmHWM"), worker_rss)
