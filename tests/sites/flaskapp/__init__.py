"""A small Flask app for the end-to-end tests: `wsgi_app = "flaskapp:app"`
with the directory above this package in `search_path`.

Flask, unlike Django, does not read SCRIPT_URL: its url_for() output is
exactly SCRIPT_NAME + the route, so it shows whether the FastCGI server gave
the app the right SCRIPT_NAME.
"""

import hashlib
import os
import time

from flask import Flask, Response, request, url_for

app = Flask(__name__)


def text(body, status=200):
    return Response(body, status=status, content_type="text/plain; charset=utf-8")


@app.route("/")
def index():
    lines = [
        "flaskapp index",
        f"url_for(index)={url_for('index')}",
        f"url_for(upload)={url_for('upload')}",
        f"url_for(auth)={url_for('auth')}",
        f"url_for(static)={url_for('static', filename='app.txt')}",
        f"script_root={request.script_root}",
        f"path={request.path}",
        f"query={request.query_string.decode('latin-1')}",
    ]
    return text("\n".join(lines) + "\n")


@app.route("/upload", methods=["POST"])
def upload():
    # Hash the body as it streams in: uploads may be larger than memory wants.
    digest = hashlib.sha256()
    length = 0
    while True:
        chunk = request.stream.read(65536)
        if not chunk:
            break
        digest.update(chunk)
        length += len(chunk)
    return text(f"sha256={digest.hexdigest()} length={length}\n")


@app.route("/bytes/<int:n>")
def pattern_bytes(n):
    # The first n bytes of 0, 1, ..., 250, 0, 1, ... streamed in pieces of
    # 70029 bytes (251 * 279): each piece is larger than one FastCGI record
    # (65535 bytes) and none is a power of two.
    def generate():
        block = bytes(range(251)) * 279
        left = n
        while left > 0:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            yield piece

    return Response(generate(), content_type="application/octet-stream")


@app.route("/pid")
def pid():
    # Under FastCGI one process serves request after request; under CGI
    # every request has a process of its own.
    return text(f"pid={os.getpid()}\n")


@app.route("/sleep/<float:seconds>")
def sleep(seconds):
    time.sleep(seconds)
    return text(f"slept {seconds}\n")


@app.route("/auth")
def auth():
    # Apache drops Authorization for CGI and FastCGI unless told otherwise;
    # token-auth APIs break silently when it is lost.
    value = request.headers.get("Authorization", "(none)")
    return text(f"authorization={value}\n")
