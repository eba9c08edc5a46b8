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
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
# Past this much unread body the connection is dropped rather than read to its end.
MAX_SKIPPED_BODY = 256 * 1024
IDLE_SECONDS = 30.0
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")

Resolve = Callable[[str, int], Awaitable[list[str]]]


class ProtocolError(OSError):
    """The answer is not HTTP/1.x as this client reads it, or the connection broke."""


@dataclass
class Response:
    """An answer: its status, headers (last value of a repeated name) and first body bytes."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


@dataclass
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


class _Connection(asyncio.Protocol):
    """One connection: sends a request, parses its answer, then waits to be used again."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.parser: _Parser | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.received_any = False
        self.idle_since = asyncio.get_running_loop().time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, data: bytes, parser: _Parser) -> asyncio.Future[Response]:
        """Write a request; the future gets its answer."""
        assert self.transport is not None
        self.parser, self.buffer, self.received_any = parser, bytearray(), False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        """Parse what came in; bytes nobody asked for end the connection."""
        if self.parser is None or self.waiter is None or self.waiter.done():
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
        """The peer closed its side: a close-delimited body is complete, anything else broke."""
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """End whatever was in progress."""
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if self.parser is not None and self.parser.mode == "close":
            self.parser.reusable = False
            self._finish()
            return
        reason = str(exc) if exc else "the server closed the connection before answering"
        self._fail(ProtocolError(reason))

    def _finish(self) -> None:
        parser, waiter = self.parser, self.waiter
        assert parser is not None and waiter is not None
        if not parser.reusable:
            self.close()
        self.parser = None
        self.idle_since = asyncio.get_running_loop().time()
        waiter.set_result(Response(parser.status, parser.reason, parser.headers,
                                   bytes(parser.body)))

    def _fail(self, exc: Exception) -> None:
        self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

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


@dataclass
class _Origin:
    """The connections to one origin and the turns of requests waiting for one."""

    slots: asyncio.Semaphore
    idle: list[_Connection] = field(default_factory=list)
    requests: int = 0  # in flight or waiting for a slot


class Http1Client:
    """Pooled HTTP/1.1 requests; `resolve` turns a host into the addresses to connect to."""

    def __init__(self, resolve: Resolve, per_origin: int) -> None:
        self.resolve, self.per_origin = resolve, per_origin
        self._origins: dict[tuple[str, str, int, ssl.SSLContext | None], _Origin] = {}
        self._swept = 0.0  # the event loop's clock

    async def request(self, method: str, scheme: str, host: str, port: int, target: str,
                      headers: dict[str, str], body: bytes | None,
                      context: ssl.SSLContext | None, keep_body: int) -> Response:
        """Send one request and read its answer (callers bound the time it may take)."""
        host_header = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            host_header += f":{port}"
        data = encode_request(method, target, host_header, headers, body)
        now = asyncio.get_running_loop().time()
        if now - self._swept > IDLE_SECONDS / 3:
            self.sweep(now)
        key = (scheme, host, port, context)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(asyncio.Semaphore(self.per_origin))
        origin.requests += 1
        try:
            return await self._request_on(origin, data, method, host, port, context,
                                          keep_body)
        finally:
            origin.requests -= 1

    async def _request_on(self, origin: _Origin, data: bytes, method: str, host: str,
                          port: int, context: ssl.SSLContext | None, keep_body: int
                          ) -> Response:
        async with origin.slots:
            connection = self._idle_connection(origin)
            if connection is not None:
                try:
                    return await self._exchange(origin, connection, data, method, keep_body)
                except ProtocolError:
                    # A kept-alive connection the server had closed: try once more on a new
                    # one, but only where sending the request twice is harmless.
                    if connection.received_any or method not in IDEMPOTENT:
                        raise
            connection = await self._connect(host, port, context)
            return await self._exchange(origin, connection, data, method, keep_body)

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
            if not fresh and not origin.requests:
                del self._origins[key]

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while origin.idle:
            connection = origin.idle.pop()
            if connection.fresh(now):
                return connection
            connection.close()
        return None

    async def _exchange(self, origin: _Origin, connection: _Connection, data: bytes,
                        method: str, keep_body: int) -> Response:
        try:
            response = await connection.send(data, _Parser(keep_body, no_body=method == "HEAD"))
        except BaseException:
            connection.close()  # cancelled or broken mid-answer: the connection is unusable
            raise
        if connection.reusable:
            origin.idle.append(connection)
        return response

    async def _connect(self, host: str, port: int, context: ssl.SSLContext | None
                       ) -> _Connection:
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for address in await self.resolve(host, port):
            try:
                _transport, connection = await loop.create_connection(
                    _Connection, address, port, ssl=context,
                    server_hostname=host if context is not None else None)
                return connection
            except OSError as exc:
                error = exc
        raise error or OSError(f"the name {host} has no address")

    def close(self) -> None:
        """Close every idle connection."""
        for origin in self._origins.values():
            for connection in origin.idle:
                connection.close()
            origin.idle.clear()
        self._origins.clear()
