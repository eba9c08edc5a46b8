"""A small HTTP/1.1 client on asyncio protocols, for the engine's outbound calls.

Jobs make one request and want the status, the headers and the first 2,048 bytes of the body,
thousands at a time. That is a small part of HTTP, and doing only that costs a fraction of a
general-purpose client per call: one `Protocol` per connection parses the answer as it comes
in, kept-alive connections are pooled per origin (scheme, host, port, TLS context), and at most
`per_origin` requests to one origin are in flight at once, the others waiting their turn.

Bodies may be `Content-Length`, chunked or ended by the connection's close; redirects are
answers like any other; no cookies, no proxies, no compression (none is asked for).
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
# Past this much unread body the connection is dropped rather than read to its end.
MAX_SKIPPED_BODY = 256 * 1024
IDLE_SECONDS = 30.0
# Deadlines are kept in steps this long: a request may give up this much after its timeout.
DEADLINE_STEP = 0.1
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")

Resolve = Callable[[str, int], Awaitable[list[str]]]


class ProtocolError(OSError):
    """The answer is not HTTP/1.x as this client reads it, or the connection broke."""


@dataclass(slots=True)
class Response:
    """An answer: its status, headers (last value of a repeated name) and first body bytes."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class _Parser:
    """The state of one answer being read."""

    keep_body: int
    no_body: bool
    status: int = 0
    reason: str = ""
    version: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = "head"  # head, length, chunk-size, chunk-data, chunk-end, trailers, close
    remaining: int = 0
    body: bytearray = field(default_factory=bytearray)
    skipped: int = 0
    reusable: bool = True


def _advance(parser: _Parser, buffer: bytearray) -> bool:
    """Consume what the buffer holds; True once the answer is complete."""
    while True:
        if parser.mode == "head":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ProtocolError("the answer's header is over 64 KiB")
                return False
            head = bytes(buffer[:end])
            del buffer[:end + 4]
            if not _read_head(parser, head):
                continue  # an interim 1xx answer: the real one follows
        elif parser.mode == "length":
            taken = min(parser.remaining, len(buffer))
            _keep(parser, buffer, taken)
            parser.remaining -= taken
            if parser.remaining == 0:
                return True
            return _give_up_on_body(parser)
        elif parser.mode == "close":
            _keep(parser, buffer, len(buffer))
            return _give_up_on_body(parser)
        elif parser.mode == "chunk-size":
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > 1024:
                    raise ProtocolError("a chunk size line is too long")
                return False
            size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
            del buffer[:end + 2]
            try:
                parser.remaining = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            parser.mode = "chunk-data" if parser.remaining else "trailers"
        elif parser.mode == "chunk-data":
            taken = min(parser.remaining, len(buffer))
            _keep(parser, buffer, taken)
            parser.remaining -= taken
            if parser.remaining:
                return _give_up_on_body(parser)
            parser.mode = "chunk-end"
        elif parser.mode == "chunk-end":
            if len(buffer) < 2:
                return False
            if buffer[:2] != b"\r\n":
                raise ProtocolError("a chunk does not end with CRLF")
            del buffer[:2]
            parser.mode = "chunk-size"
        else:  # trailers, up to an empty line
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            del buffer[:end + 2]
            if end == 0:
                return True


def _keep(parser: _Parser, buffer: bytearray, taken: int) -> None:
    room = parser.keep_body - len(parser.body)
    if room > 0:
        parser.body += buffer[:min(room, taken)]
    parser.skipped += max(0, taken - max(room, 0))
    del buffer[:taken]


def _give_up_on_body(parser: _Parser) -> bool:
    """Stop reading a long body once what is kept is in: the connection is dropped instead."""
    if len(parser.body) >= parser.keep_body and parser.skipped >= MAX_SKIPPED_BODY:
        parser.reusable = False
        return True
    return False


def _read_head(parser: _Parser, head: bytes) -> bool:
    """Read the status line and headers; False for an interim (1xx) answer."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    status = int(parts[1])
    if 100 <= status < 200:
        return False
    parser.version, parser.status = parts[0], status
    parser.reason = parts[2] if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:80]!r}")
        headers[name] = value.strip()
    parser.headers = headers
    lowered = {name.lower(): value for name, value in headers.items()}
    connection = lowered.get("connection", "").lower()
    parser.reusable = ("close" not in connection if parser.version == "HTTP/1.1"
                       else "keep-alive" in connection)
    _choose_body_mode(parser, lowered)
    return True


def _choose_body_mode(parser: _Parser, lowered: dict[str, str]) -> None:
    if parser.no_body or parser.status in (204, 304):
        parser.mode, parser.remaining = "length", 0
    elif "chunked" in lowered.get("transfer-encoding", "").lower():
        parser.mode = "chunk-size"
    elif "content-length" in lowered:
        length = lowered["content-length"]
        if not length.isdigit():
            raise ProtocolError(f"bad Content-Length {length[:20]!r}")
        parser.mode, parser.remaining = "length", int(length)
    else:
        parser.mode, parser.reusable = "close", False


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
    """One connection: sends a request, parses its answer, then takes the next request."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.parser: _Parser | None = None
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
        self.parser = _Parser(request.keep_body, request.method == "HEAD")
        self.exchange, exchange.connection = exchange, self
        self.received_any = False
        self.transport.write(request.data)

    def data_received(self, data: bytes) -> None:
        """Parse what came in; bytes nobody asked for end the connection."""
        if self.parser is None:
            self.close()
            return
        self.received_any = True
        self.buffer += data
        try:
            done = _advance(self.parser, self.buffer)
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
        parser, exchange = self.parser, self.exchange
        if parser is not None and exchange is not None and not exchange.future.done():
            if parser.mode == "close":
                parser.reusable = False
                self._finish()
            elif (self.used and not self.received_any and not exchange.retried
                  and exchange.request.method in IDEMPOTENT):
                self.parser = self.exchange = exchange.connection = None
                exchange.retried = True
                self.origin.connect(exchange)
            else:
                reason = str(exc) if exc else "the server closed the connection before answering"
                self._fail(ProtocolError(reason))
        self._uncount()

    def _finish(self) -> None:
        parser, exchange = self.parser, self.exchange
        assert parser is not None and exchange is not None
        self.parser = self.exchange = exchange.connection = None
        self.used = True
        self.idle_since = asyncio.get_running_loop().time()
        if not parser.reusable or self.buffer:  # bytes past the answer: out of step
            self.close()
        exchange.resolve(Response(parser.status, parser.reason, parser.headers,
                                  bytes(parser.body)))
        if self.reusable:
            self.origin.release(self)

    def _fail(self, exc: Exception) -> None:
        exchange = self.exchange
        self.parser = self.exchange = None
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
        return not self.closed and self.parser is None and self.transport is not None \
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

    def __init__(self, resolve: Resolve, per_origin: int) -> None:
        self.resolve, self.per_origin = resolve, per_origin
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
        """A new connection to the origin, at the first of its addresses that answers."""
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for address in await self.resolve(origin.host, origin.port):
            try:
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(origin), address, origin.port, ssl=origin.context,
                    server_hostname=origin.host if origin.context is not None else None)
                return connection
            except OSError as exc:
                error = exc
        raise error or OSError(f"the name {origin.host} has no address")

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
