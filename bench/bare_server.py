"""A bare Flask app (one route, no auth, no database) served exactly like the scheduler.

Run as `python -m bench.bare_server --home H --port P --body FILE`: it loads the home's
settings and serves through `scheduler.api.server.serve`, so TLS with client certificates,
gunicorn workers, threads and keep-alive are those of the real server.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flask import Flask, Response

from scheduler.admin import tune_garbage_collection
from scheduler.api.server import serve
from scheduler.settings import load_settings

BARE_PATH = "/bare"
READY = "bare ready"


def create_bare_app(body: bytes) -> Flask:
    """A Flask app whose only route answers `body` as JSON."""
    app = Flask(__name__)

    @app.get(BARE_PATH)
    def bare() -> Response:
        return Response(body, status=200, content_type="application/json; charset=utf-8")

    return app


def main() -> None:
    """Serve the bare app until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--body", required=True, help="file holding the response body")
    args = parser.parse_args()
    settings = load_settings(Path(args.home))
    body = Path(args.body).read_bytes()
    tune_garbage_collection()  # as `scheduler serve` does
    serve(settings, lambda: create_bare_app(body), args.host, args.port,
          f"{READY}: https://{args.host}:{args.port} (pid {os.getpid()})")


if __name__ == "__main__":
    main()
