import os, sys, marshal
if sys.version_info < (3, 8):
    sys.stderr.write("fcgi-shim: Python %s (%s) is too old: fcgi-shim needs Python 3.8 or later;"
                     " set python in site.toml to a newer one\n" % (sys.version.split()[0], sys.executable))
    sys.exit(3)
def r(n, b=b""):
    while len(b) < n:
        c = os.read(3, n - len(b))
        if not c:
            raise SystemExit
        b += c
    return b
s = r(int.from_bytes(r(4), "little"))
p = ""
try:
    p = sys.argv[2] + sys.modules["_frozen_importlib_external"].MAGIC_NUMBER.hex()
    with open(p, "rb") as f:
        c = marshal.loads(f.read())
except Exception:
    c = compile(s, "fcgi_shim_worker", "exec")
    if p:
        try:
            t = "%s.%d" % (p, os.getpid())
            with open(os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(marshal.dumps(c))
            os.replace(t, p)
        except Exception:
            pass
exec(c, {"__name__": "__fcgi_shim_worker__"})
