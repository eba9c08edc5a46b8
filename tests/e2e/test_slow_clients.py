"""Clients that stall, trickle, or send broken or oversized bodies, against a real `serve`.

The tests share two servers, one with the default request timeout and one that gives a
request 1 s, each test as a subscription of its own."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.support import ServerProcess, as_new_subscription, create_collection
from tests.support import http_job

# Every wait below ends as soon as its condition holds; this only bounds a failing test.
PATIENCE = 60.0
JOB_PATH = "/j1?api-version=2014-04-01"


@pytest.fixture
def server(own_subscription: ServerProcess) -> ServerProcess:
    """The module's shared server, as a subscription of the test's own sees it."""
    return own_subscription


@pytest.fixture(scope="module")
def impatient_server(shared_server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A server that gives a request 1 s to arrive (handshake, head and body)."""
    return shared_server_factory(env={"SCHEDULER_SERVER_REQUEST_TIMEOUT_SECONDS": "1"})


@pytest.fixture
def impatient(impatient_server: ServerProcess, tmp_path: Path) -> ServerProcess:
    """The impatient server, as a subscription of the test's own sees it."""
    return as_new_subscription(impatient_server, tmp_path)


def client_hello_start(length: int) -> bytes:
    """The first bytes of a real TLS ClientHello."""
    context = ssl.create_default_context()
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()[:length]


@contextlib.contextmanager
def tls_connection(server: ServerProcess) -> Iterator[ssl.SSLSocket]:
    """A TLS connection presenting the admin certificate."""
    context = server.ssl_context(str(server.info["clientCert"]))
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        yield tls


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer on a connection (its body by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of the answer"
        body += chunk
    return int(lines[0].split()[1]), body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed the connection (waiting for it up to PATIENCE)."""
    sock.settimeout(PATIENCE)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def job_request(server: ServerProcess, jobs_url: str, headers: str, body: bytes) -> bytes:
    """A PUT of job j1 with these extra header lines and this body, as raw bytes."""
    path = jobs_url.removeprefix(server.base_url) + JOB_PATH
    return (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{headers}\r\n").encode() + body


def test_stalled_handshakes_and_heads_hold_no_thread(server: ServerProcess) -> None:
    """More stalled clients than the API has threads (2 workers of 32): some send nothing,
    some the start of a ClientHello, some part of a request's head; the API still answers."""
    stalled: list[socket.socket] = []
    try:
        for _ in range(50):
            stalled.append(socket.create_connection(("127.0.0.1", server.port)))
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(client_hello_start(10))
            stalled.append(sock)
        context = server.ssl_context(str(server.info["clientCert"]))
        for _ in range(50):
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
            tls.sendall(f"GET /{server.subscription_id}/cloudservices HTTP/1.1\r\nHo".encode())
            stalled.append(tls)
        with server.session() as session:
            response = session.get(f"{server.base_url}/{server.subscription_id}/cloudservices",
                                   timeout=PATIENCE)
        assert response.status_code == 200
    finally:
        for sock in stalled:
            sock.close()


def test_a_stalled_handshake_or_head_is_closed_after_the_request_timeout(
        impatient: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port)) as sock:
        sock.sendall(client_hello_start(10))
        assert closed_by_server(sock)
    with tls_connection(impatient) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert closed_by_server(tls)


def test_a_body_that_stalls_gets_408(impatient: ServerProcess) -> None:
    _session, jobs_url = create_collection(impatient, "Standard")
    with tls_connection(impatient) as tls:
        tls.sendall(job_request(impatient, jobs_url, "Content-Length: 100\r\n", b'{"acti'))
        status, body = read_answer(tls)
    assert status == 408
    assert "did not arrive within 1 s" in json.loads(body)["error"]["message"]


def test_a_chunk_larger_than_what_follows_gets_408_not_a_wait(impatient: ServerProcess) -> None:
    _session, jobs_url = create_collection(impatient, "Standard")
    with tls_connection(impatient) as tls:
        tls.sendall(job_request(impatient, jobs_url, "Transfer-Encoding: chunked\r\n",
                                b"fffffff\r\n{}"))
        status, _body = read_answer(tls)
    assert status == 408


@pytest.mark.parametrize("chunks, named", [
    (b"zz\r\n{}\r\n0\r\n\r\n", "chunk size"),
    (b"-2\r\n{}\r\n0\r\n\r\n", "chunk size"),
    (b"2\r\n{}XX0\r\n\r\n", "terminator"),
    (b"2;" + b"e" * 100_000 + b"\r\n{}\r\n0\r\n\r\n", "chunk size"),
], ids=["not-hex", "negative", "no-crlf", "long-extension"])
def test_a_malformed_chunked_body_gets_400_naming_it(server: ServerProcess, chunks: bytes,
                                                     named: str) -> None:
    _session, jobs_url = create_collection(server, "Standard")
    with tls_connection(server) as tls:
        tls.sendall(job_request(server, jobs_url, "Transfer-Encoding: chunked\r\n", chunks))
        status, body = read_answer(tls)
    assert status == 400
    message = json.loads(body)["error"]["message"]
    assert "not valid HTTP/1.1" in message and named in message.lower()


def test_a_body_over_the_limit_sent_whole_gets_its_413(server: ServerProcess) -> None:
    """Python's requests sends all of a body before it reads the answer."""
    session, jobs_url = create_collection(server, "Standard")
    document = http_job()
    document["action"]["request"]["body"] = "x" * 5_000_000
    response = session.put(jobs_url + JOB_PATH, json=document, timeout=PATIENCE)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"
    assert session.get(jobs_url + JOB_PATH, timeout=PATIENCE).status_code == 404


def test_a_chunked_body_over_the_limit_gets_413(server: ServerProcess) -> None:
    session, jobs_url = create_collection(server, "Standard")

    def chunks() -> Iterator[bytes]:
        yield b'{"action": {"type": "http", "request": {"method": "POST", "body": "'
        for _ in range(80):
            yield b"x" * 65_536
        yield b'"}}}'

    response = session.put(jobs_url + JOB_PATH, data=chunks(), timeout=PATIENCE,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"
    # The connection stays usable: the refused body was read to its end.
    assert session.get(jobs_url + JOB_PATH, timeout=PATIENCE).status_code == 404


def test_a_kept_alive_connection_that_stalls_in_its_next_head_is_closed(
        impatient: ServerProcess) -> None:
    request = f"GET /{impatient.subscription_id}/cloudservices HTTP/1.1\r\nHost: x\r\n\r\n"
    with tls_connection(impatient) as tls:
        tls.sendall(request.encode())
        assert read_answer(tls)[0] == 200
        tls.sendall(request.encode()[:20])
        assert closed_by_server(tls)
