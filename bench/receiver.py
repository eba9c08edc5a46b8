"""A fast loopback HTTP receiver for the firing benchmark, run in a process of its own.

Run as `python -m bench.receiver [--port P]`; it prints `receiver ready PORT` once listening.
Every request is answered `200 ok` with keep-alive. For each request outside `/_ctl/` it keeps
(arrival wall-clock time, path, `x-ms-scheduler-expected-execution-time`,
`x-ms-execution-tag`, `x-ms-scheduler-jobid`). Control requests (never recorded):

    GET  /_ctl/count   the number of requests recorded, as text
    GET  /_ctl/dump    every record, as a JSON array of arrays
    POST /_ctl/reset   forget every record

`ReceiverClient` is the parent's side of that. Plain asyncio protocol, no framework: the
receiver shares the machine's cores with what it measures, so it must cost little per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY = "receiver ready"
OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
      b"Keep-Alive: timeout=300\r\n\r\nok")
MAX_HEAD = 64 * 1024
WANTED = (b"x-ms-scheduler-expected-execution-time", b"x-ms-execution-tag",
          b"x-ms-scheduler-jobid")

Record = tuple[float, str, str, str, str]


def _answer(status: str, body: bytes, content_type: str = "text/plain") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class ReceiverState:
    """What the receiver has recorded."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def control(self, method: bytes, path: bytes) -> bytes:
        """Answer a `/_ctl/` request."""
        if path == b"/_ctl/count":
            return _answer("200 OK", str(len(self.records)).encode())
        if path == b"/_ctl/dump":
            return _answer("200 OK", json.dumps(self.records).encode(), "application/json")
        if path == b"/_ctl/reset" and method == b"POST":
            self.records = []
            return _answer("200 OK", b"reset")
        return _answer("404 Not Found", b"no such control")


class RequestProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parse requests as they arrive, answer each at once."""

    def __init__(self, state: ReceiverState) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Consume every complete request in the buffer."""
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            length, close = 0, False
            found: dict[bytes, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name in WANTED:
                    found[name] = value.strip().decode("latin-1")
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            method, _, rest = lines[0].partition(b" ")
            path = rest.partition(b" ")[0]
            if path.startswith(b"/_ctl/"):
                response = self.state.control(method, path)
            else:
                self.state.records.append((
                    time.time(), path.decode("latin-1"), found.get(WANTED[0], ""),
                    found.get(WANTED[1], ""), found.get(WANTED[2], "")))
                response = OK
            self.transport.write(response)
            if close:
                self.transport.close()
                self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the transport."""
        self.transport = None


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:`port` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    state = ReceiverState()
    server = await loop.create_server(lambda: RequestProtocol(state), "127.0.0.1", port,
                                      backlog=4096)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"{READY} {bound}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    """Run the receiver."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


# --- the parent's side ---------------------------------------------------------------------

class ReceiverClient:
    """Starts the receiver process and reads what it recorded."""

    def __init__(self, root: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-u", "-m", "bench.receiver"], stdout=subprocess.PIPE,
                stderr=out, cwd=root, start_new_session=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith(READY):
            self.stop()
            raise RuntimeError(f"the receiver did not start: {line!r} "
                               f"{log.read_text(errors='replace')[-2000:]}")
        self.port = int(line.split()[-1])

    def url(self, path: str) -> str:
        """A URL on the receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def _get(self, method: str, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"receiver {path}: {response.status}")
            return body
        finally:
            conn.close()

    def count(self) -> int:
        """How many requests were recorded."""
        return int(self._get("GET", "/_ctl/count"))

    def dump(self) -> list[Record]:
        """Every record."""
        rows: list[Any] = json.loads(self._get("GET", "/_ctl/dump"))
        return [(float(a), str(p), str(e), str(t), str(j)) for a, p, e, t, j in rows]

    def reset(self) -> None:
        """Forget every record."""
        self._get("POST", "/_ctl/reset")

    def stop(self) -> None:
        """Stop the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            with contextlib.suppress(OSError):
                self.process.stdout.close()


if __name__ == "__main__":
    main()
