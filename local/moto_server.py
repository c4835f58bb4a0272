"""moto's server, one request at a time: ``python -m local.moto_server -H 127.0.0.1 -p PORT``.

moto's own server is threaded and takes no lock around a request, so two concurrent conditional
writes to one DynamoDB item can both pass their condition: a lost update that DynamoDB never allows.
Several KCL workers writing the same job item hit exactly that. Serializing requests keeps the
accepting and the I/O threaded and makes every DynamoDB call atomic, as on AWS; moto is bound by one
interpreter lock anyway, so little is lost.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serialized(app: WsgiApp) -> WsgiApp:
    """The WSGI app, called under one lock (moto answers with a list: the body is built inside)."""
    lock = threading.Lock()

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))

    return call


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="local.moto_server", description=__doc__.split("\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not one line per request
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
