"""The limits of site.toml (README, "Every key of site.toml") through Apache
+ mod_fcgid: request_timeout, max_body, max_requests."""

import os


def pid(site):
    r = site.get("/pid")
    assert r.status_code == 200, r.text
    return r.text


def test_request_timeout_answers_504_and_the_next_request_works(make_site):
    site = make_site("flask")
    site.write_config(request_timeout=2)
    site.start()
    before = pid(site)
    start = site.log_size()
    r = site.get("/sleep/8.0")
    assert r.status_code == 504, (r.status_code, r.text)
    assert r.elapsed.total_seconds() < 7, r.elapsed
    assert "slept" not in r.text
    r = site.get("/sleep/0.1")
    assert (r.status_code, r.text) == (200, "slept 0.1\n")
    assert pid(site) != before, "the stuck worker must have been replaced"
    assert site.wait_for_log(r"(?i)timeout|timed out|request_timeout", start), (
        "the log does not say the request timed out"
    )

def test_max_body_answers_413(make_site):
    site = make_site("flask")
    site.write_config(max_body="1K")
    site.start()
    r = site.post("/upload", data=os.urandom(1024))
    assert r.status_code == 200, r.text
    assert r.text.endswith(" length=1024\n")
    r = site.post("/upload", data=os.urandom(1025))
    assert r.status_code == 413, (r.status_code, r.text)
    r = site.post("/upload", data=b"small")
    assert r.status_code == 200, r.text

def test_max_requests_recycles_the_worker_without_failing_a_request(make_site):
    site = make_site("flask")
    site.write_config(max_requests=3)
    site.start()
    pids = [pid(site) for _ in range(9)]
    # Requests 1-3 on one worker, 4-6 on the next, 7-9 on a third. (mod_fcgid
    # sends sequential requests to the one shim it has started.)
    assert len(set(pids[0:3])) == 1, pids
    assert len(set(pids[3:6])) == 1, pids
    assert len(set(pids[6:9])) == 1, pids
    assert len(set(pids)) == 3, pids
