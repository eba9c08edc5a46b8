"""Serving the API over mutual TLS with gunicorn."""

from __future__ import annotations

import logging
import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.certificates import trusted_certificates
from scheduler.settings import Settings

log = logging.getLogger(__name__)


X509_V_FLAG_NO_CHECK_TIME = 0x200000  # OpenSSL's; Python's ssl module does not name it


class ClientCertificateContexts:
    """TLS contexts that trust every registered management certificate.

    Python's ssl has no verify callback, so each registered certificate becomes a trust
    anchor; partial chains let a self-signed leaf anchor itself. gunicorn asks for a context
    per connection; one is rebuilt only when the certificate registry's version moves.
    """

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self._lock = threading.Lock()
        self._version: int | None = None
        self._context: ssl.SSLContext | None = None

    def current(self) -> ssl.SSLContext:
        """The context for a new connection."""
        version = self.db.registry_version()
        with self._lock:
            if self._context is None or version != self._version:
                self._context = self._build()
                self._version = version
            return self._context

    def _build(self) -> ssl.SSLContext:
        server = self.settings.server
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.settings.path(server.cert_file),
                                self.settings.path(server.key_file))
        # Optional, so a request without a certificate gets Azure's 403 document.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        # A registered certificate that has expired, or is not valid yet, still completes the
        # handshake, so that it gets Azure's 403 ForbiddenError document: the request's
        # authentication checks the validity period against the service's clock.
        context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
        context.load_verify_locations(cafile=str(self.settings.path(server.ca_file)))
        with self.db.snapshot() as session:
            anchors = trusted_certificates(session)
        if anchors:
            pem = b"".join(pki.pem_bytes(pki.load_certificate(der)) for der in anchors)
            context.load_verify_locations(cadata=pem.decode())
        return context


WSGIApp = Callable[..., Any]


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code: threaded workers, TLS with client certificates."""

    def __init__(self, settings: Settings, app_factory: Callable[[], WSGIApp],
                 host: str, port: int, ready_message: str,
                 on_exit: Callable[[Any], None] | None = None) -> None:
        self.settings, self.app_factory, self.on_exit = settings, app_factory, on_exit
        self.host, self.port, self.ready_message = host, port, ready_message
        self._app: WSGIApp | None = None
        self.contexts = ClientCertificateContexts(settings, Database(settings.database_url))
        super().__init__()

    def load_config(self) -> None:
        """Translate our settings into gunicorn's."""
        server = self.settings.server
        contexts = self.contexts
        message = self.ready_message

        def ssl_context(_conf: Any, _default: Any) -> ssl.SSLContext:
            return contexts.current()

        def when_ready(_arbiter: Any) -> None:
            print(message, flush=True)

        def worker_exit(_arbiter: Any, _worker: Any) -> None:
            if self.on_exit is not None and self._app is not None:
                self.on_exit(self._app)

        options = {
            "bind": f"{self.host}:{self.port}",
            "workers": server.workers,
            "worker_class": "gthread",
            "threads": server.threads,
            "keepalive": server.keepalive_seconds,
            "certfile": str(self.settings.path(server.cert_file)),
            "keyfile": str(self.settings.path(server.key_file)),
            "ssl_context": ssl_context,
            "when_ready": when_ready,
            "worker_exit": worker_exit,
            "graceful_timeout": 30,
            "timeout": 120,
            "loglevel": "warning",
            "errorlog": "-",
            "proc_name": "scheduler",
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        """Build the app in the worker, after the fork."""
        self._app = self.app_factory()
        return self._app


def serve(settings: Settings, app_factory: Callable[[], WSGIApp], host: str, port: int,
          ready_message: str, on_exit: Callable[[Any], None] | None = None) -> None:
    """Run the server until SIGTERM or SIGINT."""
    sys.argv = sys.argv[:1]  # gunicorn reads no flags of ours
    GunicornServer(settings, app_factory, host, port, ready_message, on_exit).run()
