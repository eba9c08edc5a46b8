"""A small HTTP/1.1 client on asyncio protocols, for the engine's outbound calls.

Jobs make one request and want the status, the headers and the first 2,048 bytes of the body,
thousands at a time. That is a small part of HTTP, and doing only that costs a fraction of a
general-purpose client per call: one `Protocol` per connection feeds the answer to llhttp (the
parser of Node.js, through httptools) as it comes in, kept-alive connections are pooled per
origin (scheme, host, port, TLS context), and at most `per_origin` requests to one origin are
in flight at once, the others waiting their turn.

Nothing the target sends is trusted: llhttp refuses what is not HTTP/1.1 to the letter (chunk
sizes, duplicate or conflicting lengths, header names and values, line endings), every buffer is
bounded (the head, the trailers, a body past the bytes kept), and an answer that breaks a rule
fails its attempt at once with the rule it broke. Connections are made with happy eyeballs
(aiohappyeyeballs): a second address is tried 250 ms after the first if that one has not
answered, so one blackholed address does not use up the call's time.

Bodies may be `Content-Length`, chunked or ended by the connection's close; redirects are
answers like any other; no cookies, no proxies, no compression (none is asked for).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import aiohappyeyeballs
import httptools

# The status line and header fields of an answer, and its trailer fields.
MAX_HEAD = 64 * 1024
MAX_TRAILERS = 16 * 1024
# Past this much unread body the connection is dropped rather than read to its end.
MAX_SKIPPED_BODY = 256 * 1024
# An idle connection is used again only this soon after its last answer: servers close theirs
# after 2 s (gunicorn) to 5 s (Apache, uvicorn, Node.js), and a request sent as they do is lost.
IDLE_SECONDS = 1.5
# Happy eyeballs: the next address is tried this long after the one before, and connecting
# (TCP and the TLS handshake) gives up after CONNECT_SECONDS.
HAPPY_EYEBALLS_DELAY = 0.25
CONNECT_SECONDS = 10.0
# Deadlines are kept in steps this long: a request may give up this much after its timeout.
DEADLINE_STEP = 0.1
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")
_VERSIONS = frozenset({"1.0", "1.1"})
_PROTOCOL = b"HTTP/"

Resolve = Callable[[str, int], Awaitable[list[str]]]
CheckAddress = Callable[[str, str], None]


class ProtocolError(OSError):
    """The answer is not HTTP/1.x as this client reads it, or the connection broke."""


class _Stop(Exception):  # not an error: the answer is complete
    """Raised in a parser callback to stop reading: what is kept of the answer is in."""


@dataclass(slots=True)
class Response:
    """An answer: its status, headers (last value of a repeated name) and first body bytes."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


class _Answer:
    """One answer being read: llhttp's callbacks fill it in as bytes are fed to it.

    httptools gathers a header field until the next one starts, so the bytes fed are counted
    too: a head, or a run of chunk lines and trailers without body between them, is refused
    past `MAX_HEAD` rather than kept growing.
    """

    __slots__ = ("body", "body_bytes", "codings", "complete", "delimited_by_close", "fed",
                 "has_length", "head_bytes", "head_only", "headers", "headers_done", "keep_alive",
                 "keep_body", "parser", "reason", "seen", "skipped", "status", "trailer_bytes")

    def __init__(self, keep_body: int, head_only: bool) -> None:
        self.keep_body, self.head_only = keep_body, head_only
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.reason = 0, ""
        self.headers: dict[str, str] = {}
        self.codings: list[str] = []  # the values of every Transfer-Encoding field
        self.body = bytearray()
        self.skipped = self.head_bytes = self.trailer_bytes = self.body_bytes = 0
        self.fed = 0  # bytes fed since the answer began, or since the last body bytes
        self.seen = 0  # bytes of the protocol name checked
        self.headers_done = self.complete = self.keep_alive = False
        self.delimited_by_close = self.has_length = False

    def feed(self, data: bytes) -> bool:
        """Read what came in; True once the answer is complete. Raises `ProtocolError`."""
        if self.seen < len(_PROTOCOL):  # llhttp also reads RTSP/ and ICE/ answers
            start = data[:len(_PROTOCOL) - self.seen]
            if not _PROTOCOL.startswith(start, self.seen):
                raise ProtocolError(f"not an HTTP/1.x answer: {data[:40]!r}")
            self.seen += len(start)
        body_bytes = self.body_bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # 101 Switching Protocols: an answer, then not HTTP
            self.complete, self.keep_alive = True, False
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Stop):
                self.complete, self.keep_alive = True, False
            elif isinstance(cause, ProtocolError):
                raise cause from None
            else:
                raise ProtocolError(f"the answer could not be read: {cause or exc}") from None
        except httptools.HttpParserError as exc:
            raise ProtocolError(f"the answer is not valid HTTP/1.1: {exc}") from None
        if not self.complete:
            self._count(len(data), self.body_bytes > body_bytes)
        else:  # the parser holds callbacks bound to this answer: a cycle the GC would chase
            del self.parser
        return self.complete

    def _count(self, fed: int, got_body: bool) -> None:
        """Count bytes fed that brought no body: past `MAX_HEAD` of them, the answer is
        refused."""
        self.fed = 0 if got_body else self.fed + fed
        if self.fed > MAX_HEAD:
            what = "chunk lines or trailers are" if self.headers_done else "header is"
            raise ProtocolError(f"the answer's {what} over {MAX_HEAD // 1024} KiB")

    def closed(self) -> bool:
        """The connection closed: whether that ends the answer (a body delimited by close)."""
        if self.headers_done and self.delimited_by_close and not self.complete:
            self.complete, self.keep_alive = True, False
        return self.complete

    # llhttp's callbacks, through httptools.

    def on_message_begin(self) -> None:
        """Bytes past a complete answer: the connection is out of step."""
        if self.complete:
            self.keep_alive = False
            raise _Stop

    def on_status(self, reason: bytes) -> None:
        """The reason phrase, or a piece of it."""
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header field, or a trailer field once the body has begun (counted, not kept)."""
        size = len(name) + len(value)
        if self.headers_done:
            self.trailer_bytes += size
            if self.trailer_bytes > MAX_TRAILERS:
                raise ProtocolError(f"the answer's trailers are over {MAX_TRAILERS // 1024} KiB")
            return
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD:
            raise ProtocolError(f"the answer's header is over {MAX_HEAD // 1024} KiB")
        text = value.decode("latin-1").strip(" \t")
        lowered = name.lower()
        if lowered == b"transfer-encoding":  # every one counts, not the last
            self.codings.append(text)
        elif lowered == b"content-length":
            self.has_length = True
        self.headers[name.decode("latin-1")] = text

    def on_headers_complete(self) -> None:
        """The head is in: an interim (1xx) answer is skipped, else the body's framing set."""
        status, version = self.parser.get_status_code(), self.parser.get_http_version()
        if version not in _VERSIONS:
            raise ProtocolError(f"the answer is HTTP/{version}, not HTTP/1.x")
        self.status = status
        if 100 <= status < 200 and status != 101:  # the real answer follows
            self.headers, self.reason, self.head_bytes, self.codings = {}, "", 0, []
            self.has_length = False
            return
        self.headers_done = True
        if self.codings and ", ".join(self.codings).lower() != "chunked":
            coding = ", ".join(self.codings)
            raise ProtocolError(f"the answer's Transfer-Encoding {coding[:40]!r} is not "
                                "chunked, the only one this client reads")
        self.delimited_by_close = (
            not self.codings and not self.has_length and status not in (204, 304))
        if self.head_only:  # an answer to HEAD has no body, whatever its headers say
            raise _Stop

    def on_body(self, body: bytes) -> None:
        """Body bytes: the first `keep_body` are kept; past `MAX_SKIPPED_BODY` more, reading
        stops and the connection is dropped."""
        self.body_bytes += len(body)
        room = self.keep_body - len(self.body)
        if room > 0:
            self.body += body[:room]
        self.skipped += max(0, len(body) - max(room, 0))
        if self.skipped >= MAX_SKIPPED_BODY:
            raise _Stop

    def on_message_complete(self) -> None:
        """The answer is complete (an interim one: the next follows)."""
        if self.headers_done:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()


def encode_request(method: str, target: str, host: str, headers: dict[str, str],
                   body: bytes | None) -> bytes:
    """The request's bytes; refuses names and values that would break the framing."""
    if not _TOKEN.match(method):
        raise ValueError(f"the method {method[:20]!r} is not an HTTP token")
    target = _UNSAFE_TARGET.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()),
                                target)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lowered = set()
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"the header name {name[:40]!r} is not an HTTP token")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"the header {name} holds a line break")
        lowered.add(name.lower())
        lines.append(f"{name}: {value}")
    if "host" in lowered:
        raise ValueError("the Host header is set from the URI")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        if "content-length" in lowered or "transfer-encoding" in lowered:
            raise ValueError("Content-Length and Transfer-Encoding are set from the body")
        lines.append(f"Content-Length: {len(body or b'')}")
    if "user-agent" not in lowered:
        lines.append("User-Agent: scheduler")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="strict")
    return head + body if body else head


def body_of(request: OutboundRequest) -> bytes:
    """The body of an encoded request (empty when it has none)."""
    return request.data.partition(b"\r\n\r\n")[2]


def with_headers(request: OutboundRequest, headers: Mapping[str, str]) -> OutboundRequest:
    """An encoded request with more headers, after its own; the values are the service's
    own (`ValueError` for one that would break the framing)."""
    head, _, body = request.data.partition(b"\r\n\r\n")
    lines = []
    for name, value in headers.items():
        if not _TOKEN.match(name) or "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"the header {name[:40]!r} would break the request's framing")
        lines.append(f"\r\n{name}: {value}")
    added = "".join(lines).encode("latin-1", errors="strict")
    return replace(request, data=head + added + b"\r\n\r\n" + body)


class _Exchange:
    """A request on its way: what is sent, the future its answer goes to, where it is."""

    __slots__ = ("connecting", "connection", "deadline", "future", "request", "retried")

    def __init__(self, request: OutboundRequest, future: asyncio.Future[Response]) -> None:
        self.request, self.future = request, future
        self.connection: _Connection | None = None
        self.connecting: asyncio.Task[None] | None = None
        # The exchanges sharing this one's deadline step (`_Deadlines`), while it has one.
        self.deadline: dict[_Exchange, None] | None = None
        self.retried = False

    def resolve(self, response: Response) -> None:
        """Hand the answer over."""
        self._leave_deadline()
        if not self.future.done():
            self.future.set_result(response)

    def fail(self, exc: BaseException) -> None:
        """Hand the failure over."""
        self._leave_deadline()
        if not self.future.done():
            self.future.set_exception(exc)

    def _leave_deadline(self) -> None:
        if self.deadline is not None:
            del self.deadline[self]
            self.deadline = None

    def expire(self) -> None:
        """No answer came in time (or the caller stopped waiting): give up on it."""
        self.deadline = None
        if not self.future.done():
            self.future.set_exception(TimeoutError())
        self.abandon()

    def settled(self, future: asyncio.Future[Response]) -> None:
        """The future is done; if the caller cancelled it, stop the exchange: the request
        is not sent, or its connection is closed."""
        if future.cancelled():
            self._leave_deadline()
            if self.connecting is not None:
                self.connecting.cancel()
            self.abandon()

    def abandon(self) -> None:
        """The caller stopped waiting: a half-read answer makes the connection unusable."""
        if self.connection is not None:
            self.connection.close()
        if self.connecting is not None:
            self.connecting.cancel()


class _Connection(asyncio.Protocol):
    """One connection: sends a request, reads its answer, then takes the next request."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.answer: _Answer | None = None
        self.exchange: _Exchange | None = None
        self.closed = False
        self.counted = True  # in its origin's count of open connections
        self.used = False  # has answered before: a failure may be a stale keep-alive
        self.received_any = False
        self.idle_since = asyncio.get_running_loop().time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def start(self, exchange: _Exchange) -> None:
        """Write a request; its answer goes to the exchange's future."""
        assert self.transport is not None
        request = exchange.request
        self.answer = _Answer(request.keep_body, request.method == "HEAD")
        self.exchange, exchange.connection = exchange, self
        self.received_any = False
        self.transport.write(request.data)

    def data_received(self, data: bytes) -> None:
        """Read what came in; bytes nobody asked for end the connection."""
        if self.answer is None:
            self.close()
            return
        self.received_any = True
        try:
            done = self.answer.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        if done:
            self._finish()

    def eof_received(self) -> bool | None:
        """The peer closed its side: the transport closes, and `connection_lost` follows."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """End whatever was in progress; a stale kept-alive connection's request may go again
        on a new one, when sending it twice is harmless."""
        self.closed = True
        answer, exchange = self.answer, self.exchange
        if answer is not None and exchange is not None and not exchange.future.done():
            if answer.closed():
                self._finish()
            elif (self.used and not self.received_any and not exchange.retried
                  and exchange.request.method in IDEMPOTENT):
                self.answer = self.exchange = exchange.connection = None
                exchange.retried = True
                self.origin.connect(exchange)
            else:
                reason = str(exc) if exc else (
                    "the server closed the connection before the answer ended"
                    if self.received_any else
                    "the server closed the connection before answering")
                self._fail(ProtocolError(reason))
        self._uncount()

    def _finish(self) -> None:
        answer, exchange = self.answer, self.exchange
        assert answer is not None and exchange is not None
        self.answer = self.exchange = exchange.connection = None
        self.used = True
        self.idle_since = asyncio.get_running_loop().time()
        if not answer.keep_alive:
            self.close()
        exchange.resolve(Response(answer.status, answer.reason, answer.headers,
                                  bytes(answer.body)))
        if self.reusable:
            self.origin.release(self)

    def _fail(self, exc: Exception) -> None:
        exchange = self.exchange
        self.answer = self.exchange = None
        self.close()
        if exchange is not None:
            exchange.connection = None
            exchange.fail(exc)

    def fresh(self, now: float) -> bool:
        """Whether the connection may take another request: open, idle, not idle for long."""
        return self.reusable and now - self.idle_since < IDLE_SECONDS

    @property
    def reusable(self) -> bool:
        """Whether another request may go on this connection."""
        return not self.closed and self.answer is None and self.transport is not None \
            and not self.transport.is_closing()

    def close(self) -> None:
        """Drop the connection."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._uncount()

    def _uncount(self) -> None:
        """Leave the origin's count once, making room for a connection a waiting request
        needs."""
        if self.counted:
            self.counted = False
            self.origin.connection_gone()


@dataclass(slots=True)
class OutboundRequest:
    """A request encoded ahead of sending: where it goes and its bytes."""

    scheme: str
    host: str
    port: int
    context: ssl.SSLContext | None
    method: str
    data: bytes
    keep_body: int


class _Origin:
    """The connections to one origin, and the requests waiting for one of them.

    A connection that finishes an answer takes the next waiting request itself, in the same
    callback: at most `limit` connections are open, and a request never waits for a task to
    be scheduled to go out."""

    def __init__(self, client: Http1Client, request: OutboundRequest, limit: int) -> None:
        self.client, self.limit = client, limit
        self.scheme, self.host, self.port = request.scheme, request.host, request.port
        self.context = request.context
        self.idle: list[_Connection] = []
        self.waiting: deque[_Exchange] = deque()
        self.open = 0  # connections open or being made

    def submit(self, exchange: _Exchange, now: float) -> None:
        """Send now on an idle connection, or on a new one if there is room, or wait."""
        while self.idle:
            connection = self.idle.pop()
            if connection.fresh(now):
                connection.start(exchange)
                return
            connection.close()
        if self.open < self.limit:
            self.connect(exchange)
        else:
            self.waiting.append(exchange)

    def release(self, connection: _Connection) -> None:
        """A connection is free: it takes the next waiting request, or waits itself."""
        exchange = self._next_waiting()
        if exchange is None:
            self.idle.append(connection)
        else:
            connection.start(exchange)

    def connection_gone(self) -> None:
        """A connection closed: open another for the next waiting request, if any."""
        self.open -= 1
        while self.open < self.limit and (exchange := self._next_waiting()) is not None:
            self.connect(exchange)

    def connect(self, exchange: _Exchange) -> None:
        """Open a connection for this request."""
        self.open += 1
        exchange.connecting = asyncio.ensure_future(self._connect_and_start(exchange))

    def forgettable(self) -> bool:
        """Whether nothing is open or waiting here."""
        return not self.open and not self.waiting

    def _next_waiting(self) -> _Exchange | None:
        while self.waiting:
            exchange = self.waiting.popleft()
            if not exchange.future.done():  # the others' callers gave up waiting
                return exchange
        return None

    async def _connect_and_start(self, exchange: _Exchange) -> None:
        try:
            connection = await self.client.connect(self)
        except Exception as exc:
            self.connection_gone()
            exchange.fail(exc)
            return
        except BaseException:  # cancelled: the caller gave up waiting
            self.connection_gone()
            raise
        finally:
            exchange.connecting = None
        if not connection.reusable:  # the server hung up before the request went out
            exchange.fail(ProtocolError("the server closed the connection before answering"))
        elif exchange.future.done():
            self.release(connection)
        else:
            connection.start(exchange)


class _Deadlines:
    """When submitted requests give up, kept in steps of `DEADLINE_STEP` with one event-loop
    timer per step: thousands of requests sent at once make a few timers, not one each, and
    an answer takes its request out of its step in constant time."""

    def __init__(self) -> None:
        self._steps: dict[int, dict[_Exchange, None]] = {}


    @property
    def held(self) -> int:
        """How many requests have a deadline."""
        return sum(len(step) for step in self._steps.values())
    def add(self, exchange: _Exchange, deadline: float, loop: asyncio.AbstractEventLoop
            ) -> None:
        """Give up on the exchange at `deadline` (the loop's clock), or up to a step after."""
        step = math.ceil(deadline / DEADLINE_STEP)
        exchanges = self._steps.get(step)
        if exchanges is None:
            exchanges = self._steps[step] = {}
            loop.call_at(step * DEADLINE_STEP, self._expire, step)
        exchanges[exchange] = None
        exchange.deadline = exchanges

    def _expire(self, step: int) -> None:
        for exchange in list(self._steps.pop(step)):
            exchange.expire()


class Http1Client:
    """Pooled HTTP/1.1 requests; `resolve` turns a host into the addresses to connect to."""

    def __init__(self, resolve: Resolve, per_origin: int,
                 check_address: CheckAddress = lambda _host, _address: None,
                 connect_timeout: float = CONNECT_SECONDS) -> None:
        """`check_address(host, address)` raises `OSError` for an address connected to that
        calls may not reach."""
        self.resolve, self.per_origin = resolve, per_origin
        self.check_address, self.connect_timeout = check_address, connect_timeout
        self._origins: dict[tuple[str, str, int, ssl.SSLContext | None], _Origin] = {}
        self._deadlines = _Deadlines()
        self._swept = 0.0  # the event loop's clock

    def prepare(self, method: str, scheme: str, host: str, port: int, target: str,
                headers: dict[str, str], body: bytes | None, context: ssl.SSLContext | None,
                keep_body: int) -> OutboundRequest:
        """Encode a request, ahead of sending it; raises `ValueError` for what would break
        the framing."""
        host_header = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            host_header += f":{port}"
        data = encode_request(method, target, host_header, headers, body)
        return OutboundRequest(scheme, host, port, context, method, data, keep_body)

    async def request(self, method: str, scheme: str, host: str, port: int, target: str,
                      headers: dict[str, str], body: bytes | None,
                      context: ssl.SSLContext | None, keep_body: int) -> Response:
        """Send one request and read its answer (callers bound the time it may take)."""
        return await self.send(self.prepare(method, scheme, host, port, target, headers, body,
                                            context, keep_body))

    async def send(self, request: OutboundRequest) -> Response:
        """Send a prepared request and read its answer (callers bound the time it may take)."""
        exchange = self._submit(request, asyncio.get_running_loop())
        try:
            return await exchange.future
        except BaseException:
            exchange.abandon()
            raise

    def submit(self, request: OutboundRequest, timeout: float) -> asyncio.Future[Response]:
        """Send a prepared request without a task to wait for it: the future gets the answer,
        or `TimeoutError` if none came within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        exchange = self._submit(request, loop)
        self._deadlines.add(exchange, loop.time() + timeout, loop)
        exchange.future.add_done_callback(exchange.settled)  # a cancel closes the connection
        return exchange.future

    def _submit(self, request: OutboundRequest, loop: asyncio.AbstractEventLoop) -> _Exchange:
        now = loop.time()
        if now - self._swept > IDLE_SECONDS / 3:
            self.sweep(now)
        key = (request.scheme, request.host, request.port, request.context)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(self, request, self.per_origin)
        exchange = _Exchange(request, loop.create_future())
        origin.submit(exchange, now)
        return exchange

    def sweep(self, now: float) -> None:
        """Close connections idle for `IDLE_SECONDS` and forget origins nobody uses, so that
        calls to many hosts do not pile up open sockets."""
        self._swept = now
        for key, origin in list(self._origins.items()):
            fresh = [connection for connection in origin.idle if connection.fresh(now)]
            for connection in origin.idle:
                if connection not in fresh:
                    connection.close()
            origin.idle = fresh
            if origin.forgettable():
                del self._origins[key]

    async def connect(self, origin: _Origin) -> _Connection:
        """A new connection to the origin: happy eyeballs over its addresses, the address
        connected to checked, then the TLS handshake; all within the connect timeout."""
        loop = asyncio.get_running_loop()
        addresses = await self.resolve(origin.host, origin.port)
        if not addresses:
            raise OSError(f"the name {origin.host} has no address")
        try:
            async with asyncio.timeout(self.connect_timeout):
                sock = await aiohappyeyeballs.start_connection(
                    [_address_info(address, origin.port) for address in addresses],
                    happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1)
                try:
                    self.check_address(origin.host, sock.getpeername()[0])
                    _transport, connection = await loop.create_connection(
                        lambda: _Connection(origin), sock=sock, ssl=origin.context,
                        server_hostname=origin.host if origin.context is not None else None)
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise OSError(f"could not connect to {origin.host} within "
                          f"{self.connect_timeout:g} s") from None
        return connection

    @property
    def origin_count(self) -> int:
        """How many origins the client keeps a pool for."""
        return len(self._origins)

    @property
    def open_connections(self) -> int:
        """How many connections the client counts open, over every origin."""
        return sum(origin.open for origin in self._origins.values())

    @property
    def deadlines_held(self) -> int:
        """How many requests the client still keeps a deadline for."""
        return self._deadlines.held

    def close(self) -> None:
        """Close every idle connection."""
        for origin in self._origins.values():
            for connection in origin.idle:
                connection.close()
            origin.idle.clear()
        self._origins.clear()


def _address_info(address: str, port: int) -> aiohappyeyeballs.AddrInfoType:
    """The `getaddrinfo` entry of an address, as happy eyeballs takes it."""
    if ipaddress.ip_address(address).version == 6:
        return socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0)
    return socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port)
