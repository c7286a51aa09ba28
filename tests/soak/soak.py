"""The soak test of fcgi-shim (issue: reliability, "Soak"): 1,000,000
requests through nginx to four spawned shims at concurrency 16, with zero
failed requests and flat memory and descriptor counts. Run by tests/soak/run.

Four shims, each started by spawn-fcgi on its own unix socket as the
README's nginx setup does, behind one nginx upstream (round robin, a new
connection per request as mod_fcgid talks). wrk runs rounds of ROUND_S
seconds until the total passes REQUESTS; after each round the shims' and
their workers' RSS, descriptor counts and pids are sampled. It exits 0 only
when no request failed or came back wrong, no worker was replaced, the
descriptor counts never changed, and memory after the last round is within
a small bound of memory after the first (the first round warms up).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "tests" / "apps"))
from e2e_harness import Nginx, SpawnFcgi, chown_www, make_readable, toml_value  # noqa: E402
import stream_check  # noqa: E402

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "1000000"))
ROUND_S = int(os.environ.get("SOAK_ROUND_S", "15"))
SHIMS = 4
CONNS = 16
DOWNLOAD = 256 << 10
SHIM_GROWTH = 256 << 10  # bytes the shim may grow after the first round
WORKER_GROWTH = 2 << 20  # and its Python worker


def status(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def worker_of(pid):
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(kids[0]) if len(kids) == 1 else None


def sample(shims):
    out = []
    for s in shims:
        w = worker_of(s.pid)
        out.append({"shim": s.pid, "worker": w, "shim_rss": status(s.pid, "VmRSS"),
                    "shim_fds": fds(s.pid),
                    "worker_rss": status(w, "VmRSS") if w else 0,
                    "worker_fds": fds(w) if w else 0})
    return out


def main():
    binary = REPO / "target" / "release" / "fcgi-shim"
    root = Path(tempfile.mkdtemp(prefix="fcgi-shim-soak-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    python = sys.executable
    shims = []
    for i in range(SHIMS):
        web = root / f"site{i}"
        web.mkdir()
        shutil.copy(binary, web / "mysite.fcgi")
        os.chmod(web / "mysite.fcgi", 0o755)
        (web / "site.toml").write_text(
            f"python = {toml_value(python)}\n"
            f"search_path = [{toml_value(str(HERE))}]\n"
            'wsgi_app = "soak_app:application"\n'
            f"log_file = {toml_value(str(root / f'shim{i}.log'))}\n")
    (root / "s").mkdir()
    chown_www(root)
    make_readable(root)
    upstream = "\n".join(f"    server unix:{root}/s/shim{i}.sock;" for i in range(SHIMS))
    nginx = Nginx(root / "nginx", f"""
upstream soak {{
{upstream}
}}
server {{
    listen 80;
    client_max_body_size 1m;
    location / {{
        include fastcgi_params;
        fastcgi_param SCRIPT_NAME "";
        fastcgi_param PATH_INFO $uri;
        fastcgi_pass soak;
    }}
}}
""")
    body = os.urandom(16 << 10)
    body_file = root / "upload.bin"
    body_file.write_bytes(body)
    download = b"".join(stream_check.stream(3, DOWNLOAD))
    env = dict(os.environ, SOAK_BODY_FILE=str(body_file),
               SOAK_UPLOAD_ANSWER=hashlib.sha256(body).hexdigest(),
               SOAK_DOWNLOAD_SIZE=str(DOWNLOAD),
               SOAK_DOWNLOAD_HEAD=download[:16].hex(), SOAK_DOWNLOAD_TAIL=download[-16:].hex())
    failed = []
    try:
        for i in range(SHIMS):
            s = SpawnFcgi(root / f"site{i}" / "mysite.fcgi", root / "s" / f"shim{i}.sock")
            s.start()
            shims.append(s)
        nginx.start()
        url = f"http://127.0.0.1:{nginx.port}"
        subprocess.run(["curl", "-sf", url + "/hello"], check=True, capture_output=True)
        total, rounds, samples, round_errors = 0, [], [], []
        started = time.monotonic()
        while total < REQUESTS:
            out = subprocess.run(["wrk", "-t2", f"-c{CONNS}", f"-d{ROUND_S}s", "--latency",
                                  "-s", str(HERE / "soak.lua"), url + "/"],
                                 env=env, capture_output=True, text=True, timeout=ROUND_S + 60)
            line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith("{")),
                        None)
            if out.returncode != 0 or line is None:
                raise RuntimeError(f"wrk failed:\n{out.stdout}{out.stderr}")
            r = json.loads(line)
            # "bad" counts every answer that is not a right 200 (soak.lua),
            # so wrk's own "status" (4xx and 5xx) would count some twice.
            errors = sum(r[k] for k in ("bad", "connect", "read", "write", "timeout"))
            total += r["requests"]
            snap = sample(shims)
            rounds.append(r)
            round_errors.append(errors)
            samples.append(snap)
            rss = ", ".join(str(x["shim_rss"] >> 10) for x in snap)
            nfds = ", ".join(str(x["shim_fds"]) for x in snap)
            wrss = ", ".join(str(x["worker_rss"] >> 10) for x in snap)
            rate = r["requests"] / (r["duration_us"] / 1e6)
            print(f"round {len(rounds)}: {r['requests']} requests ({rate:.0f}/s, p50 "
                  f"{r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms), "
                  f"{errors} failed; total {total}; shim RSS {rss} KiB, fds {nfds}; "
                  f"worker RSS {wrss} KiB", flush=True)
            if errors:
                failed.append(f"round {len(rounds)}: {errors} failed requests "
                              f"(first wrong answer: {r['first_bad'] or '-'}; {r})")
        elapsed = time.monotonic() - started
        first, last = samples[0], samples[-1]
        for i, (a, b) in enumerate(zip(first, last)):
            if any(s[i]["worker"] != a["worker"] for s in samples):
                failed.append(f"shim {i}: its python worker was replaced")
            if len({s[i]["shim_fds"] for s in samples}) != 1:
                failed.append(f"shim {i}: descriptors changed: {[s[i]['shim_fds'] for s in samples]}")
            if len({s[i]["worker_fds"] for s in samples}) != 1:
                failed.append(f"shim {i}: worker descriptors changed: "
                              f"{[s[i]['worker_fds'] for s in samples]}")
            if b["shim_rss"] - a["shim_rss"] > SHIM_GROWTH:
                failed.append(f"shim {i}: RSS grew {a['shim_rss'] >> 10} -> {b['shim_rss'] >> 10} KiB")
            if b["worker_rss"] - a["worker_rss"] > WORKER_GROWTH:
                failed.append(f"shim {i}: worker RSS grew {a['worker_rss'] >> 10} -> "
                              f"{b['worker_rss'] >> 10} KiB")
        bad_total = sum(round_errors)
        kib = [(a["shim_rss"] >> 10, b["shim_rss"] >> 10) for a, b in zip(first, last)]
        wkib = [(a["worker_rss"] >> 10, b["worker_rss"] >> 10) for a, b in zip(first, last)]
        print(f"soak: {total} requests in {elapsed:.0f} s through nginx to {SHIMS} shims at "
              f"concurrency {CONNS}, {bad_total} failed; shim RSS after the first and the last "
              f"round {kib} KiB, worker RSS {wkib} KiB, descriptors "
              f"{[b['shim_fds'] for b in last]} (shims) {[b['worker_fds'] for b in last]} "
              "(workers)")
        logs = "".join(p.read_text() for p in sorted(root.glob("shim*.log")))
        complaints = [ln for ln in logs.splitlines() if " warning: " in ln or " error: " in ln]
        if complaints:
            failed.append("the shims logged:\n  " + "\n  ".join(complaints[:20]))
    finally:
        nginx.stop()
        for s in shims:
            s.stop()
    if failed:
        print("soak: FAILED\n- " + "\n- ".join(failed))
        print(f"files kept in {root}")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    print("soak: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
