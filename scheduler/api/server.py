"""Serving the API over mutual TLS with gunicorn."""

from __future__ import annotations

import errno
import logging
import math
import selectors
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from gunicorn import http as gunicorn_http
from gunicorn import sock as gunicorn_sock
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.http.errors import ParseException
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.exceptions import BadRequest, RequestTimeout

from scheduler.db.outage import Outage, is_unavailable
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.certificates import trusted_certificates
from scheduler.settings import Settings

log = logging.getLogger(__name__)
# A certificate refused in the handshake is logged with the requests' lines: no request of
# that connection ever reaches the app to be logged there.
access_log = logging.getLogger("scheduler.access")
# The refusal reason of a client certificate no trust anchor vouches for.
UNTRUSTED = "untrusted"


X509_V_FLAG_NO_CHECK_TIME = 0x200000  # OpenSSL's; Python's ssl module does not name it
HEAD_BYTES = 65_536  # of a request, read by the poller before a thread takes it up
DISCARD_BYTES = 64 * 1_048_576  # of a body refused with 413, read so its client sees the 413


class ClientTooSlow(ConnectionResetError):
    """The client did not send its request, or read its answer, within the time allowed.

    A connection reset to gunicorn, which closes the connection and logs it at debug level.
    """


class DeadlineSocket(ssl.SSLSocket):
    """A TLS socket on which a request's reads end by a deadline and each write within a time
    limit, from when gunicorn makes it blocking for a thread to take the request up."""

    limit_seconds = 10.0
    _read_deadline = math.inf
    _write_deadline = math.inf

    def setblocking(self, flag: bool) -> None:
        """Blocking starts a request's deadline; non-blocking, for the poller, ends it."""
        super().setblocking(flag)
        self._read_deadline = time.monotonic() + self.limit_seconds if flag else math.inf

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """Read what has arrived, waiting no later than the request's deadline."""
        if self._read_deadline == math.inf:  # the poller's non-blocking reads
            return super().read(len, buffer)
        self._wait_until(self._read_deadline, "send its request")
        try:
            return super().read(len, buffer)
        except TimeoutError:
            raise self._too_slow("send its request") from None

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Write all of it within the time limit."""
        if self._read_deadline != math.inf:
            self._write_deadline = time.monotonic() + self.limit_seconds
        try:
            super().sendall(data, flags)
        finally:
            self._write_deadline = math.inf

    def send(self, data: Any, flags: int = 0) -> int:
        """Write what the socket takes, waiting no later than the write's deadline."""
        self._wait_until(self._write_deadline, "read its answer")
        try:
            return super().send(data, flags)
        except TimeoutError:
            raise self._too_slow("read its answer") from None

    def _wait_until(self, deadline: float, what: str) -> None:
        if deadline == math.inf:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._too_slow(what)
        self.settimeout(left)

    def _too_slow(self, what: str) -> ClientTooSlow:
        return ClientTooSlow(errno.ECONNRESET,
                             f"the client did not {what} within {self.limit_seconds:g} s")


# How often a connection's context looks at the server certificate's files, at most.
CERTIFICATE_CHECK_SECONDS = 1.0
FileState = tuple[int, int, int] | None  # inode, size, modification time in ns; None: absent


def file_state(path: Path) -> FileState:
    """What `stat` says of a file that changes when it is written or replaced."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


class ServerCertificateUnusable(ValueError):
    """The server's certificate and key files do not load together."""


class ServerCertificateFiles:
    """The server's certificate and key files, looked at (`stat`) at most once a second:
    a renewed certificate is taken up without a restart."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._looked_at = -math.inf
        self._state: tuple[FileState, FileState] = (None, None)

    def state(self) -> tuple[FileState, FileState]:
        """The files' state, as last looked at."""
        now = time.monotonic()
        if now - self._looked_at >= CERTIFICATE_CHECK_SECONDS:
            self._looked_at = now
            self._state = (file_state(self.cert), file_state(self.key))
        return self._state


class ClientCertificateContexts:
    """TLS contexts that trust every registered management certificate, with the server's
    certificate as its files are now.

    Python's ssl has no verify callback, so each registered certificate becomes a trust
    anchor; partial chains let a self-signed leaf anchor itself. gunicorn asks for a context
    per connection; one is rebuilt only when the certificate registry's version moves or
    the server certificate's files change. The first, made when serve starts, trusts the
    home's CA alone, and refuses a certificate and key that do not load; later, such a pair
    (half written, or mismatched) leaves the last context in use, with a warning.
    """

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        server = settings.server
        self.files = ServerCertificateFiles(settings.path(server.cert_file),
                                            settings.path(server.key_file))
        self._lock = threading.Lock()
        self._version: int | None = None  # of the trust store in use; None: none read yet
        self._files = self.files.state()
        self._anchors: list[bytes] = []
        self._context = self._build(self._anchors)
        self._outage = Outage(log, "TLS trust store")

    def current(self) -> ssl.SSLContext:
        """The context for a new connection. While the database is away, one with the last
        trust store read (or, before any, the first, which trusts the home's CA alone):
        handshakes, and so `/healthz` and the 503s of requests, do not wait for the database
        to come back."""
        files = self.files.state()
        anchors: list[bytes] | None = None
        try:
            version: int | None = self.db.registry_version()
            with self._lock:
                if (version, files) == (self._version, self._files):
                    self._outage.succeeded()
                    return self._context
            with self.db.snapshot() as session:
                anchors = trusted_certificates(session)
            self._outage.succeeded()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self._outage.failed(exc)
            version = None
        with self._lock:
            if anchors is not None:
                return self._rebuild(anchors, version, files)
            if files != self._files:
                return self._rebuild(self._anchors, self._version, files)
            return self._context

    def _rebuild(self, anchors: list[bytes], version: int | None,
                 files: tuple[FileState, FileState]) -> ssl.SSLContext:
        """Make the context again, and return the one in use: on a certificate and key that
        do not load, the last one, until the files change again."""
        try:
            context = self._build(anchors)
        except ServerCertificateUnusable as exc:
            if files != self._files:
                log.warning("%s; new connections keep the previous certificate and trust "
                            "store until they do", exc)
            self._files, self._version = files, version
            return self._context
        if files != self._files:
            log.info("new connections use the server certificate %s as it is now",
                     self.files.cert)
        self._context, self._anchors, self._version, self._files = (context, anchors,
                                                                    version, files)
        return context

    def _build(self, anchors: list[bytes]) -> ssl.SSLContext:
        """A context trusting the home's CA and `anchors`, the registered certificates."""
        server = self.settings.server
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.sslsocket_class = DeadlineSocket
        try:
            context.load_cert_chain(self.files.cert, self.files.key)
        except (ssl.SSLError, OSError) as exc:
            raise ServerCertificateUnusable(
                f"the server certificate {self.files.cert} and key {self.files.key} do not "
                f"load: {exc}") from exc
        # Optional, so a request without a certificate gets Azure's 403 document.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        # A registered certificate that has expired, or is not valid yet, still completes the
        # handshake, so that it gets Azure's 403 ForbiddenError document: the request's
        # authentication checks the validity period against the service's clock.
        context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
        context.load_verify_locations(cafile=str(self.settings.path(server.ca_file)))
        if anchors:
            pem = b"".join(pki.pem_bytes(pki.load_certificate(der)) for der in anchors)
            context.load_verify_locations(cadata=pem.decode())
        return context


WSGIApp = Callable[..., Any]


class GuardedConn(TConn):  # type: ignore[misc]
    """A gunicorn connection with what the poller has read of its handshake and head."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.handshaken = False
        self.head = bytearray()


class GuardedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker whose poller does the TLS handshakes and reads the request
    heads, so that a thread takes up only a request that has arrived.

    A client that stalls in its handshake or its head holds no thread and is closed after
    `server.request_timeout_seconds`; one that stalls in its body or in reading its answer
    holds a thread for that long at most (DeadlineSocket).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arriving: deque[GuardedConn] = deque()
        self.limit_seconds = float(self.app.settings.server.request_timeout_seconds)

    def accept(self, listener: Any) -> None:
        """Accept a connection, leaving its handshake to the poller."""
        try:
            client_sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = GuardedConn(self.cfg, client_sock, client, listener.getsockname())
        try:
            conn.sock = gunicorn_sock.ssl_wrap_socket(client_sock, self.cfg)
        except Exception as exc:  # the client has gone, or the trust store cannot be read
            log.warning("closing a new connection: %s", exc)
            self.nr_conns -= 1
            conn.close()
            return
        conn.sock.limit_seconds = self.limit_seconds
        conn.parser = gunicorn_http.get_parser(self.cfg, conn.sock, client)
        conn.initialized = True
        self._await(conn)

    def on_client_socket_readable(self, conn: GuardedConn, client: Any) -> None:
        """A kept-alive connection has bytes: read its next request's head in the poller."""
        self.keepalived_conns.remove(conn)
        conn.timeout = time.monotonic() + self.limit_seconds
        self.arriving.append(conn)
        self.poller.modify(client, selectors.EVENT_READ, partial(self._advance, conn))
        self._advance(conn, client)

    def murder_pending(self) -> None:
        """Close connections whose handshake or head is late, and on stopping those that
        have sent nothing yet."""
        super().murder_pending()
        now = time.monotonic()
        while self.arriving and self.arriving[0].timeout <= now:
            self._drop(self.arriving[0])
        if not self.alive:
            for conn in [conn for conn in self.arriving if not conn.head]:
                self._drop(conn)

    def _await(self, conn: GuardedConn) -> None:
        conn.timeout = time.monotonic() + self.limit_seconds
        self.arriving.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._advance, conn))

    def _advance(self, conn: GuardedConn, _sock: Any) -> None:
        """Go on with the handshake or the head; hand the request to a thread once its head
        is in."""
        try:
            waiting_for = self._read_head(conn)
        except ssl.SSLCertVerificationError as exc:  # the client's certificate, as we check
            self._refused_certificate(conn, exc)
            self._drop(conn)
            return
        except (OSError, ValueError) as exc:  # ssl.SSLError is one: a failed handshake
            log.debug("closing an arriving connection: %s", exc)
            self._drop(conn)
            return
        if waiting_for is not None:
            self.poller.modify(conn.sock, waiting_for, partial(self._advance, conn))
            return
        self._forget(conn)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head.clear()
        conn.data_ready = True
        self.enqueue_req(conn)

    def _refused_certificate(self, conn: GuardedConn, exc: ssl.SSLCertVerificationError
                             ) -> None:
        """Log and count a client certificate the handshake refused: neither registered nor
        issued by the home CA, so trusted by no anchor (or not a client certificate)."""
        client = conn.client[0] if isinstance(conn.client, tuple) else str(conn.client)
        access_log.info("TLS handshake refused a client certificate: %s",
                        exc.verify_message or exc.reason, extra={
                            "auth": UNTRUSTED, "verify_code": exc.verify_code,
                            "client": client or "-"})
        self.app.certificate_refused(UNTRUSTED)

    @staticmethod
    def _read_head(conn: GuardedConn) -> int | None:
        """What the socket must become (readable, writable) for the handshake or the head to
        go on; None once the head has ended or is as long as the poller reads."""
        try:
            if not conn.handshaken:
                conn.sock.do_handshake()
                conn.handshaken = True
            while len(conn.head) < HEAD_BYTES:
                data = conn.sock.recv(HEAD_BYTES - len(conn.head))
                if not data:
                    raise ConnectionResetError(errno.ECONNRESET, "closed by the client")
                searched = max(len(conn.head) - 3, 0)
                conn.head += data
                if conn.head.find(b"\n\r\n", searched) >= 0 or \
                        conn.head.find(b"\n\n", searched) >= 0:
                    return None
        except ssl.SSLWantReadError:
            return selectors.EVENT_READ
        except ssl.SSLWantWriteError:
            return selectors.EVENT_WRITE
        return None

    def _forget(self, conn: GuardedConn) -> None:
        self.arriving.remove(conn)
        self.poller.unregister(conn.sock)

    def _drop(self, conn: GuardedConn) -> None:
        self._forget(conn)
        self.nr_conns -= 1
        conn.close()


class CheckedBody:
    """gunicorn's request body as the app reads it: a body that breaks HTTP/1.1 (a bad chunk
    size, a chunk without its CRLF) or ends early is a 400, one that does not arrive in time
    a 408, instead of an exception the app cannot place."""

    def __init__(self, body: Any, limit_seconds: float) -> None:
        self.body, self.limit_seconds = body, limit_seconds

    def read(self, size: int | None = None) -> bytes:
        """Up to `size` bytes of the body, all of it without."""
        data: bytes = self._checked(self.body.read, size)
        return data

    def readline(self, size: int | None = None) -> bytes:
        """The next line of the body."""
        line: bytes = self._checked(self.body.readline, size)
        return line

    def readlines(self, size: int | None = None) -> list[bytes]:
        """The lines of the body."""
        lines: list[bytes] = self._checked(self.body.readlines, size)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _checked(self, read: Callable[..., Any], *args: Any) -> Any:
        try:
            return read(*args)
        except ClientTooSlow:
            raise RequestTimeout(f"The request body did not arrive within "
                                 f"{self.limit_seconds:g} s.") from None
        except ParseException as exc:
            raise BadRequest(f"The request body is not valid HTTP/1.1: {exc}.") from None
        except OSError:  # gunicorn's NoMoreData: the client closed before the body ended
            raise BadRequest("The request body ended before it was complete.") from None


class GuardedInput:
    """WSGI middleware: the app reads the body through CheckedBody, and a body refused with
    413 is read and dropped, up to DISCARD_BYTES, so that a client that sends all of its body
    before it reads (Python's requests does) gets the 413 instead of a reset connection."""

    def __init__(self, app: WSGIApp, limit_seconds: float) -> None:
        self.app, self.limit_seconds = app, limit_seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        """Call the app with the checked body; drop the rest of a refused one."""
        body = environ["wsgi.input"] = CheckedBody(environ["wsgi.input"], self.limit_seconds)
        statuses: list[str] = []

        def remember_status(status: str, *args: Any) -> Any:
            statuses.append(status)
            return start_response(status, *args)

        answer: Iterable[bytes] = self.app(environ, remember_status)
        if statuses and statuses[-1].startswith("413"):
            discard(body, DISCARD_BYTES)
        return answer


def discard(body: CheckedBody, limit: int) -> None:
    """Read and drop what is left of a body, up to `limit` bytes."""
    dropped = 0
    try:
        while dropped < limit:
            data = body.read(min(65_536, limit - dropped))
            if not data:
                return
            dropped += len(data)
    except (BadRequest, RequestTimeout):
        return


class RootLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's log, through the process's own handlers and format (`--log-format`)."""

    def setup(self, cfg: Any) -> None:
        """Set gunicorn's level, and send its lines to the root logger's handlers."""
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code: threaded workers, TLS with client certificates."""

    def __init__(self, settings: Settings, app_factory: Callable[[], WSGIApp],
                 host: str, port: int, ready_message: str,
                 on_exit: Callable[[Any], None] | None = None,
                 on_worker_gone: Callable[[int], None] | None = None,
                 on_certificate_refused: Callable[[Any, str], None] | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.settings, self.app_factory, self.on_exit = settings, app_factory, on_exit
        self.on_ready = on_ready
        self.on_worker_gone = on_worker_gone
        self.on_certificate_refused = on_certificate_refused
        self.host, self.port, self.ready_message = host, port, ready_message
        self._app: WSGIApp | None = None
        self.contexts = ClientCertificateContexts(
            settings, Database(settings.database_url, pool_size=1, max_overflow=1))
        super().__init__()

    def load_config(self) -> None:
        """Translate our settings into gunicorn's."""
        server = self.settings.server
        contexts = self.contexts
        message = self.ready_message

        def ssl_context(_conf: Any, _default: Any) -> ssl.SSLContext:
            return contexts.current()

        def when_ready(_arbiter: Any) -> None:
            # First what serve does once it listens (it records the port), so that a client
            # started on the ready line finds the port.
            if self.on_ready is not None:
                self.on_ready()
            print(message, flush=True)

        def worker_exit(_arbiter: Any, _worker: Any) -> None:
            if self.on_exit is not None and self._app is not None:
                self.on_exit(self._app)

        def child_exit(_arbiter: Any, worker: Any) -> None:
            if self.on_worker_gone is not None:
                self.on_worker_gone(worker.pid)

        options = {
            "bind": f"{self.host}:{self.port}",
            "workers": server.workers,
            "worker_class": GuardedThreadWorker,
            "do_handshake_on_connect": False,
            "threads": server.threads,
            "keepalive": server.keepalive_seconds,
            "certfile": str(self.settings.path(server.cert_file)),
            "keyfile": str(self.settings.path(server.key_file)),
            "ssl_context": ssl_context,
            "when_ready": when_ready,
            "worker_exit": worker_exit,
            "child_exit": child_exit,
            "graceful_timeout": 30,
            "timeout": 120,
            "loglevel": self.settings.logging.level,
            "logger_class": RootLogger,
            # Not `gunicornc`'s socket in the user's home: serves on one machine would share it.
            "control_socket_disable": True,
            "proc_name": "scheduler",
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def certificate_refused(self, reason: str) -> None:
        """A worker's handshake refused a client certificate: tell its app."""
        if self.on_certificate_refused is not None and self._app is not None:
            self.on_certificate_refused(self._app, reason)

    def load(self) -> WSGIApp:
        """Build the app in the worker, after the fork."""
        self._app = self.app_factory()
        return GuardedInput(self._app, self.settings.server.request_timeout_seconds)


def serve(settings: Settings, app_factory: Callable[[], WSGIApp], host: str, port: int,
          ready_message: str, on_exit: Callable[[Any], None] | None = None,
          on_worker_gone: Callable[[int], None] | None = None,
          on_certificate_refused: Callable[[Any, str], None] | None = None,
          on_ready: Callable[[], None] | None = None) -> None:
    """Run the server until SIGTERM or SIGINT (SIGQUIT: at once, dropping requests under
    way); `on_exit(app)` runs in a worker that stops, `on_worker_gone(pid)` in the server
    once a worker has exited, `on_certificate_refused(app, reason)` in a worker whose TLS
    handshake refused a client certificate, and `on_ready()` in the server once it listens,
    before it prints `ready_message`."""
    sys.argv = sys.argv[:1]  # gunicorn reads no flags of ours
    GunicornServer(settings, app_factory, host, port, ready_message, on_exit,
                   on_worker_gone, on_certificate_refused, on_ready).run()
