"""The engine's HTTP/1.1 client against loopback servers that answer with exact bytes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from scheduler.actions.httpclient import (
    IDLE_SECONDS,
    Http1Client,
    ProtocolError,
    Response,
    encode_request,
)

Script = Callable[[socket.socket, bytes], None]


@dataclass
class CannedServer:
    """A loopback server that reads each request and lets a script answer it."""

    script: Script
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += conn.recv(65536)
    return head + b"\r\n\r\n" + rest


@pytest.fixture
def canned() -> Iterator[Callable[[Script], CannedServer]]:
    """Start servers running a script per request, on connections kept open until closed."""
    listeners: list[socket.socket] = []

    def start(script: Script) -> CannedServer:
        server = CannedServer(script)
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        server.port = listener.getsockname()[1]

        def serve_connection(conn: socket.socket) -> None:
            with conn, contextlib.suppress(OSError):  # the client or the script hung up
                while request := _read_request(conn):
                    server.requests.append(request)
                    script(conn, request)

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                server.connections += 1
                threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return server

    yield start
    for listener in listeners:
        listener.close()


async def _loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def _get(server: CannedServer, method: str = "GET", body: bytes | None = None,
         requests: int = 1, timeout: float = 5.0) -> list[Response]:
    async def run() -> list[Response]:
        client = Http1Client(_loopback, per_origin=4)
        try:
            answers = []
            for _ in range(requests):
                async with asyncio.timeout(timeout):
                    answers.append(await client.request(
                        method, "http", "localhost", server.port, "/path?q=1",
                        {"X-Test": "yes"}, body, None, 2048))
            return answers
        finally:
            client.close()

    return asyncio.run(run())


def _answer(payload: bytes) -> Script:
    return lambda conn, _request: conn.sendall(payload)


def _at_once(port: int, per_origin: int, requests: int
             ) -> tuple[list[Response | BaseException], int]:
    """Send `requests` GETs at once; their answers (or errors), and the connections the
    client still counts open afterwards."""
    async def run() -> tuple[list[Response | BaseException], int]:
        client = Http1Client(_loopback, per_origin=per_origin)
        try:
            answers = await asyncio.gather(*(client.request(
                "GET", "http", "localhost", port, f"/{n}", {}, None, None, 2048)
                for n in range(requests)), return_exceptions=True)
            return answers, client.open_connections
        finally:
            client.close()

    return asyncio.run(run())


def _statuses(answers: list[Response | BaseException]) -> list[int | str]:
    return [a.status if isinstance(a, Response) else repr(a) for a in answers]


def test_content_length_answers_reuse_one_connection(canned: Callable[[Script], CannedServer]
                                                     ) -> None:
    server = canned(_answer(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"))
    answers = _get(server, "POST", b"payload", requests=3)
    assert [(a.status, a.reason, a.body) for a in answers] == [(201, "Created", b"hello")] * 3
    assert answers[0].headers["X-A"] == "b"
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /path?q=1 HTTP/1.1"
    assert b"Host: localhost:%d" % server.port in head
    assert b"Content-Length: 7" in head and b"X-Test: yes" in head
    assert body == b"payload"


def test_chunked_answer_with_extensions_and_trailers(canned: Callable[[Script], CannedServer]
                                                     ) -> None:
    def script(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel")
        conn.sendall(b"lo\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")

    server = canned(script)
    answers = _get(server, requests=2)
    assert [a.body for a in answers] == [b"hello world"] * 2
    assert server.connections == 1


def test_body_ended_by_close_and_interim_answers(canned: Callable[[Script], CannedServer]
                                                 ) -> None:
    def script(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil the end")
        conn.shutdown(socket.SHUT_WR)

    server = canned(script)
    answers = _get(server, requests=2)
    assert [a.body for a in answers] == [b"until the end"] * 2
    assert server.connections == 2  # a body ended by close leaves nothing to reuse


def test_only_the_first_2048_bytes_are_kept(canned: Callable[[Script], CannedServer]) -> None:
    big = b"x" * 3_000_000
    server = canned(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big))
    [answer] = _get(server)
    assert answer.body == b"x" * 2048


def test_head_and_no_content_answers_have_no_body(canned: Callable[[Script], CannedServer]
                                                  ) -> None:
    server = canned(_answer(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"))
    assert _get(server, requests=2)[1].status == 204
    assert server.connections == 1
    head = canned(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"))
    assert _get(head, "HEAD", requests=2)[1].body == b""
    # The parser reads the head only; what follows it on the connection is not known to be
    # the next answer, so the connection is not used again.
    assert head.connections == 2


def test_a_server_closing_a_kept_connection_is_retried_only_when_idempotent(
    canned: Callable[[Script], CannedServer]
) -> None:
    def script(conn: socket.socket, request: bytes) -> None:
        if len(server.requests) == 2:
            conn.close()  # the second request finds its kept-alive connection dead
            raise OSError("closed")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = canned(script)
    assert [a.status for a in _get(server, requests=2)] == [200, 200]
    assert server.connections == 2
    server.requests.clear()
    with pytest.raises(ProtocolError):
        _get(server, "POST", b"once", requests=2)
    assert len(server.requests) == 2  # the POST was not sent a second time


def test_what_is_not_http_is_an_error(canned: Callable[[Script], CannedServer]) -> None:
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.x answer"):
        _get(canned(_answer(b"SSH-2.0-OpenSSH\r\n\r\n")))
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.x answer"):
        _get(canned(_answer(b"RTSP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")))
    with pytest.raises(ProtocolError, match="chunk size"):
        _get(canned(_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")))
    with pytest.raises(ProtocolError, match="Content-Length"):
        _get(canned(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")))


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("payload", "problem"), [
    (CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", "Invalid character in chunk size"),
    (CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", "Invalid character in chunk size"),
    (CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", "Invalid character in chunk size"),
    (CHUNKED + b"0_5\r\nhello\r\n0\r\n\r\n", "Invalid character in chunk size"),
    (CHUNKED + b"5\r\nhelloXX0\r\n\r\n", "after chunk data"),
    ("HTTP/1.1 200 OK\r\nContent-Length: \u0665\r\n\r\nhello".encode(),
     "Invalid character in Content-Length"),
    ("HTTP/1.1 2\u0660\u0660 OK\r\nContent-Length: 0\r\n\r\n".encode(), "status"),
    (b"HTTP/1.1 99999 OK\r\nContent-Length: 0\r\n\r\n", "status"),
    (b"HTTP/1.10 200 OK\r\nContent-Length: 0\r\n\r\n", "version"),
    (b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/2.0, not HTTP/1.x"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
     "Duplicate Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", "Content-Length can't be present with Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     "Transfer-Encoding 'xchunked' is not chunked"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     "Transfer-Encoding 'chunked, gzip' is not chunked"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", "Transfer-Encoding 'gzip, chunked' is not chunked"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n", "header token"),
    (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", "header value char"),
    (b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", "Missing expected CR"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", "before the answer ended"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70_000, "header is over 64 KiB"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Many: 0123456789abcdef\r\n" * 3000, "header is over 64 KiB"),
    (CHUNKED + b"5\r\nhello\r\n0\r\nX-T: " + b"t" * (12 * 1024 * 1024),
     "chunk lines or trailers are over 64 KiB"),
    (CHUNKED + b"0\r\n" + b"X-T: 0123456789abcdef\r\n" * 1000 + b"\r\n",
     "trailers are over 16 KiB"),
])
def test_an_answer_that_breaks_a_rule_fails_at_once_saying_which(
    canned: Callable[[Script], CannedServer], payload: bytes, problem: str,
) -> None:
    def send_and_close(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)

    with pytest.raises(ProtocolError, match=re.escape(problem)):  # not TimeoutError
        _get(canned(send_and_close), timeout=30)


def test_trailers_are_read_and_not_taken_for_headers(canned: Callable[[Script], CannedServer]
                                                     ) -> None:
    server = canned(_answer(CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"))
    answers = _get(server, requests=2)
    assert answers[0].body == b"hello" and "X-T" not in answers[0].headers
    assert server.connections == 1


def test_a_silent_server_runs_into_the_callers_timeout(canned: Callable[[Script], CannedServer]
                                                       ) -> None:
    server = canned(lambda conn, request: None)
    with pytest.raises(TimeoutError):
        _get(server, timeout=0.3)


@pytest.mark.parametrize(("headers", "problem"), [
    ({"X-Evil": "a\r\nInjected: 1"}, "line break"),
    ({"Bad Name": "x"}, "not an HTTP token"),
    ({"Host": "elsewhere"}, "Host header"),
    ({"Content-Length": "1"}, "set from the body"),
])
def test_requests_that_would_break_the_framing_are_refused(headers: dict[str, str],
                                                           problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        encode_request("POST", "/", "example.com", headers, b"x")


def test_unsafe_characters_in_the_target_are_percent_encoded() -> None:
    head = encode_request("GET", "/a b/\u00e9?x=\r\n", "example.com", {}, None)
    assert head.split(b"\r\n")[0] == b"GET /a%20b/%C3%A9?x=%0D%0A HTTP/1.1"


def test_idle_connections_are_closed_and_unused_origins_forgotten(
    canned: Callable[[Script], CannedServer]
) -> None:
    server = canned(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))

    async def run() -> tuple[int, int, int]:
        client = Http1Client(_loopback, per_origin=4)
        await client.request("GET", "http", "localhost", server.port, "/", {}, None, None, 2048)
        kept = client.origin_count
        now = asyncio.get_running_loop().time()
        client.sweep(now)  # still fresh: kept for the next call
        fresh = client.origin_count
        client.sweep(now + IDLE_SECONDS + 1)
        return kept, fresh, client.origin_count

    assert asyncio.run(run()) == (1, 1, 0)
    assert _get(server)[0].status == 200
    assert server.connections == 2  # the swept connection was closed, a new one made


def test_requests_beyond_the_per_origin_limit_wait_for_a_free_connection(
    canned: Callable[[Script], CannedServer]
) -> None:
    # No answers until all three connections carry a request, so that the others queue.
    all_busy = threading.Barrier(3, timeout=30)

    def held(conn: socket.socket, _request: bytes) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):  # every round of three waits
            all_busy.wait()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = canned(held)
    answers, _still_open = _at_once(server.port, per_origin=3, requests=12)
    assert not all_busy.broken, "three connections were busy at once"
    assert _statuses(answers) == [200] * 12
    assert server.connections == 3
    assert len(server.requests) == 12
    assert len(server.requests) == 12


def test_a_submitted_request_times_out_and_its_connection_is_dropped(
    canned: Callable[[Script], CannedServer]
) -> None:
    def silent_first(conn: socket.socket, _request: bytes) -> None:
        if len(server.requests) > 1:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = canned(silent_first)

    async def run() -> tuple[bool, int]:
        client = Http1Client(_loopback, per_origin=1)
        try:
            request = client.prepare("GET", "http", "localhost", server.port, "/", {}, None,
                                     None, 2048)
            answered = client.submit(request, 0.1)
            with contextlib.suppress(TimeoutError):
                await answered
            timed_out = isinstance(answered.exception(), TimeoutError)
            return timed_out, (await client.send(request)).status
        finally:
            client.close()

    assert asyncio.run(run()) == (True, 200)
    assert server.connections == 2  # the connection with a half-read answer was not reused


def _deadlines_held(client: Http1Client) -> int:
    """Requests the client still keeps a deadline for (the three may straddle two steps)."""
    return client.deadlines_held


def test_answered_requests_leave_their_deadline_and_the_others_time_out_with_it(
    canned: Callable[[Script], CannedServer]
) -> None:
    def quick_only(conn: socket.socket, request: bytes) -> None:
        if request.split(b" ")[1] == b"/quick":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = canned(quick_only)

    async def run() -> tuple[list[int], bool, int, int]:
        client = Http1Client(_loopback, per_origin=4)
        try:
            answers = [client.submit(client.prepare(
                "GET", "http", "localhost", server.port, path, {}, None, None, 2048), 0.3)
                for path in ("/quick", "/slow", "/quick")]
            quick = [await answers[0], await answers[2]]
            # Only the request still unanswered keeps its place among the deadlines.
            waiting = _deadlines_held(client)
            with contextlib.suppress(TimeoutError):
                await answers[1]
            return ([response.status for response in quick],
                    isinstance(answers[1].exception(), TimeoutError), waiting,
                    _deadlines_held(client))
        finally:
            client.close()

    assert asyncio.run(run()) == ([200, 200], True, 1, 0)


def test_a_request_whose_time_ran_out_while_waiting_is_never_sent(
    canned: Callable[[Script], CannedServer]
) -> None:
    release = threading.Event()

    def held(conn: socket.socket, request: bytes) -> None:
        if b"/first" in request:  # holds the only connection until the second timed out
            release.wait(30)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = canned(held)

    async def run() -> tuple[int, bool]:
        client = Http1Client(_loopback, per_origin=1)
        try:
            first = client.submit(client.prepare(
                "GET", "http", "localhost", server.port, "/first", {}, None, None, 2048), 5)
            second = client.submit(client.prepare(
                "GET", "http", "localhost", server.port, "/second", {}, None, None, 2048), 0.05)
            with contextlib.suppress(TimeoutError):
                await second
            release.set()
            response = await first
            # Sent in order on the one connection: had the second gone out, it would come
            # before this one.
            await client.request("GET", "http", "localhost", server.port, "/third", {}, None,
                                 None, 2048)
            return response.status, isinstance(second.exception(), TimeoutError)
        finally:
            client.close()

    assert asyncio.run(run()) == (200, True)
    assert [r.split(b" ")[1] for r in server.requests] == [b"/first", b"/third"]


def test_requests_waiting_for_a_host_that_refuses_connections_all_fail() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there any more
    answers, still_open = _at_once(port, per_origin=2, requests=6)
    assert all(isinstance(answer, ConnectionRefusedError) for answer in answers)
    assert still_open == 0


def test_waiting_requests_go_out_on_new_connections_when_the_server_closes_each(
    canned: Callable[[Script], CannedServer]
) -> None:
    server = canned(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                            b"\r\nok"))
    answers, _still_open = _at_once(server.port, per_origin=2, requests=6)
    assert _statuses(answers) == [200] * 6
    assert server.connections == 6


def test_bytes_past_an_answer_end_the_connection_not_the_next_answer(
    canned: Callable[[Script], CannedServer]
) -> None:
    server = canned(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"))
    assert [a.status for a in _get(server, requests=2)] == [200, 200]
    assert server.connections == 2  # the first connection was not reused


@pytest.fixture
def blackhole() -> Iterator[Callable[[str, int], int]]:
    """Listeners that answer no connection, as a broken route does: their backlog is full,
    so the SYNs of new connections are dropped. Returns the port listened on."""
    sockets: list[socket.socket] = []

    def listen(host: str, port: int = 0) -> int:
        listener = socket.socket()
        listener.bind((host, port))
        listener.listen(0)
        sockets.append(listener)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, port))
            sockets.append(filler)
        return port

    yield listen
    for sock in sockets:
        sock.close()


def _get_over(addresses: list[str], port: int, timeout: float = 5.0,
              **options: Any) -> Response:
    """GET / on `localhost`, resolved to these addresses."""
    async def resolve(_host: str, _port: int) -> list[str]:
        return addresses

    async def run() -> Response:
        client = Http1Client(resolve, per_origin=4, **options)
        try:
            async with asyncio.timeout(timeout):
                return await client.request("GET", "http", "localhost", port, "/", {}, None,
                                            None, 2048)
        finally:
            client.close()

    return asyncio.run(run())


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_blackholed_first_address_does_not_use_up_the_calls_time(
    canned: Callable[[Script], CannedServer], blackhole: Callable[[str, int], int],
) -> None:
    server = canned(_answer(OK))
    blackhole("127.0.0.2", server.port)  # the first address answers nothing, as IPv6 may
    # Without happy eyeballs the first connect would wait for the kernel's SYN retries
    # (over a minute), and the call would run into its 10 s deadline.
    assert _get_over(["127.0.0.2", "127.0.0.1"], server.port, timeout=10).body == b"ok"


def test_connecting_gives_up_after_the_connect_timeout(
    blackhole: Callable[[str, int], int],
) -> None:
    port = blackhole("127.0.0.2", 0)
    with pytest.raises(OSError, match=r"could not connect to localhost within 0\.5 s"):
        _get_over(["127.0.0.2"], port, timeout=30, connect_timeout=0.5)


def test_the_address_connected_to_is_checked_before_anything_is_sent(
    canned: Callable[[Script], CannedServer],
) -> None:
    server = canned(_answer(OK))

    def refuse(host: str, address: str) -> None:
        raise OSError(f"{host} connected to {address}, refused")

    with pytest.raises(OSError, match=r"localhost connected to 127\.0\.0\.1, refused"):
        _get_over(["127.0.0.1"], server.port, check_address=refuse)
    assert server.requests == []
