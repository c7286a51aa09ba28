"""Apache stopping and restarting around a request in flight: mod_fcgid
sends the shim SIGTERM, and the shim must finish the request it is serving
(FIELD_NOTES: "finish the request in flight (bounded, about 3 s) and
exit")."""

import threading
import time

import pytest


@pytest.mark.parametrize("command", ["graceful", "graceful-stop"])
def test_request_in_flight_survives_a_graceful_apache_command(make_site, command):
    site = make_site("flask").start()
    assert site.get("/").status_code == 200
    result = {}

    def slow():
        started = time.monotonic()
        try:
            r = site.get("/sleep/2.0", timeout=30)
            result["response"] = (r.status_code, r.text)
        except Exception as e:  # reported by the assertion below
            result["response"] = repr(e)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.7)  # the request is inside the app now
    site.apache.control(command)
    thread.join(40)
    assert result["response"] == (200, "slept 2.0\n"), result
    if command == "graceful":
        r = site.get("/sleep/0.1")
        assert (r.status_code, r.text) == (200, "slept 0.1\n")
