"""The Flask app through Apache + mod_fcgid: URL building at the site root
and in a sub-directory, request bodies, and the Authorization header."""

import hashlib
import os

import pytest

from e2e_harness import HTACCESS


def fields(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_url_for_at_the_site_root(make_site):
    # Flask does not read SCRIPT_URL (Django does): url_for() is exactly
    # SCRIPT_NAME + route, so "/mysite.fcgi" shows up unless the shim fixes
    # SCRIPT_NAME.
    site = make_site("flask").start()
    r = site.get("/")
    assert r.status_code == 200, r.text
    assert r.text.startswith("flaskapp index\n")
    assert fields(r.text) == {
        "url_for(index)": "/",
        "url_for(upload)": "/upload",
        "url_for(auth)": "/auth",
        "url_for(static)": "/static/app.txt",
        "script_root": "",
        "path": "/",
        "query": "",
    }


def test_url_for_in_a_subdirectory(make_site):
    site = make_site("flask", mount="blog").start()
    r = site.get("/blog/auth?x=1")
    assert r.status_code == 200, r.text
    assert r.text == "authorization=(none)\n"
    r = site.get("/blog/")
    assert r.status_code == 200, r.text
    assert fields(r.text) == {
        "url_for(index)": "/blog/",
        "url_for(upload)": "/blog/upload",
        "url_for(auth)": "/blog/auth",
        "url_for(static)": "/blog/static/app.txt",
        "script_root": "/blog",
        "path": "/",
        "query": "",
    }


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 5 * 1024 * 1024 + 7])
def test_upload_body_arrives_intact(make_site, size):
    site = make_site("flask").start()
    body = os.urandom(size)
    r = site.post("/upload", data=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.text == f"sha256={hashlib.sha256(body).hexdigest()} length={size}\n"


def test_chunked_upload_body_arrives_intact(make_site):
    # No Content-Length from the client: mod_fcgid spools the body; the app
    # must still see all of it.
    site = make_site("flask").start()
    parts = [os.urandom(100_000) for _ in range(5)]
    r = site.post("/upload", data=iter(parts))
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    body = b"".join(parts)
    assert r.status_code == 200, r.text
    assert r.text == f"sha256={hashlib.sha256(body).hexdigest()} length={len(body)}\n"


@pytest.mark.parametrize(
    "htaccess",
    [
        pytest.param(HTACCESS + "CGIPassAuth On\n", id="CGIPassAuth"),
        pytest.param(
            HTACCESS.replace(
                "RewriteEngine On\n",
                # The condition matters: without it a request with no
                # Authorization gets an empty one.
                "RewriteEngine On\nRewriteCond %{HTTP:Authorization} .\n"
                "RewriteRule .* - [E=HTTP_AUTHORIZATION:%{HTTP:Authorization}]\n",
            ),
            id="rewrite-env",
        ),
    ],
)
def test_authorization_header_reaches_the_app(make_site, htaccess):
    site = make_site("flask", htaccess=htaccess).start()
    r = site.get("/auth", headers={"Authorization": "Token 9944b09199c62bcf9418ad846dd0e4bb"})
    assert r.status_code == 200, r.text
    assert r.text == "authorization=Token 9944b09199c62bcf9418ad846dd0e4bb\n"
    r = site.get("/auth")
    assert (r.status_code, r.text) == (200, "authorization=(none)\n")


@pytest.mark.parametrize("size", [0, 65535, 65536, 3 * 1024 * 1024 + 1])
def test_large_streamed_response_arrives_intact(make_site, size):
    site = make_site("flask").start()
    r = site.get(f"/bytes/{size}")
    assert r.status_code == 200
    expected = (bytes(range(251)) * (size // 251 + 1))[:size]
    assert len(r.content) == size
    assert r.content == expected


def test_query_string_reaches_the_app(make_site):
    # QSA in the rewrite keeps the query; it must arrive undecoded.
    site = make_site("flask").start()
    r = site.get("/?a=1&b=x%20y&c=%FF")
    assert r.status_code == 200, r.text
    assert fields(r.text)["query"] == "a=1&b=x%20y&c=%FF"
    assert fields(r.text)["path"] == "/"
