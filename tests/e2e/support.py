"""What the end-to-end tests share besides fixtures: the `scheduler` binary, a running
`scheduler serve` process, and waiting, ports, collections and slow answers."""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

from scheduler.db.session import Database
from scheduler.home import load_home_ca
from scheduler.security import pki
from scheduler.services.certificates import register_certificate
from scheduler.services.subscriptions import create_subscription
from scheduler.settings import load_settings
from tests.engine.harness import Answer, Received
from tests.support import CLOUD_SERVICE_XML, POSTGRES_URL, collection_xml

BIN = Path(sys.executable).parent / "scheduler"
# How long a stopped serve may take to exit: past its graceful timeout of 30 s.
STOP_SECONDS = 45


def wait_for(condition: Any, seconds: float) -> bool:
    """Poll a condition until it holds or the time is up; whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The variable that names a process's engine node (`engine.node_name`).
ENGINE_NAME = "SCHEDULER_ENGINE_NODE_NAME"


@dataclass
class ServerProcess:
    """A running `scheduler serve`, its home and how to reach it."""

    home: Path
    info: dict[str, Any]
    port: int
    env: dict[str, str]
    role: str = "all"
    args: list[str] = field(default_factory=list)  # more flags of `scheduler serve`
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """`https://127.0.0.1:PORT`."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def subscription_id(self) -> str:
        """The subscription `init` made."""
        return str(self.info["subscriptionId"])

    def start(self, timeout: float = 90) -> None:
        """Start the process and wait for its ready line (which comes in seconds; the
        deadline only bounds a failing start on a busy machine). Its engine runs under a
        name of its own unless `env` names one: the processes of a test share one host, whose
        name each would otherwise take."""
        env = {ENGINE_NAME: f"e2e-{self.port}-{os.urandom(3).hex()}", **self.env}
        self.process = subprocess.Popen(
            [str(BIN), "serve", "--home", str(self.home), "--port", str(self.port),
             "--role", self.role, *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if "scheduler ready" in line:
                # Its log goes on (a line per request): read it, so the pipe never fills.
                threading.Thread(target=self._keep_reading, daemon=True).start()
                if self.role != "engine":
                    self._wait_for_port(deadline)
                return
        self.stop()
        raise RuntimeError("server did not start:\n" + "".join(self.output))

    def _keep_reading(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def _wait_for_port(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: master and workers."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, and wait for a clean exit."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                # Longer than the server's graceful timeout (30 s): a worker forked as the
                # stop began can miss its SIGTERM, and the server ends it only then.
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                print(self.slow_stop_report())  # shown with the test's failure
                self.kill()
        return self.process.returncode

    def slow_stop_report(self) -> str:
        """What is still running of a serve that did not stop, and its last output lines."""
        assert self.process is not None
        listing = subprocess.run(
            ["ps", "-o", "pid,ppid,stat,wchan:24,etimes,args", "-g", str(self.process.pid)],
            capture_output=True, text=True, check=False).stdout
        return (f"serve (pid {self.process.pid}) still running {STOP_SECONDS} s after "
                f"SIGTERM:\n"
                f"{listing}\nits last output:\n{''.join(self.output[-60:])}")

    def session(self, cert: str | None = None) -> requests.Session:
        """A requests session that trusts the home CA and presents `cert` (default: admin)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.info["caCert"])
        session.cert = cert or str(self.info["clientCert"])
        return session

    def ssl_context(self, cert: str | None = None) -> ssl.SSLContext:
        """A client TLS context for raw connections."""
        context = ssl.create_default_context(cafile=str(self.info["caCert"]))
        if cert is not None:
            context.load_cert_chain(cert)
        return context


def slow_responder(seconds: float) -> Callable[[Received], Answer]:
    """A receiver's answer to everything: 200 `ok`, each after `seconds` of real time, so
    that calls are in flight when a process is killed."""
    def respond(_request: Received) -> Answer:
        time.sleep(seconds)
        return 200, {}, b"ok"
    return respond


def create_collection(server: ServerProcess, plan: str) -> tuple[requests.Session, str]:
    """Create cloud service cs1 with job collection jc1 on `plan`; a session and the jobs URL."""
    session = server.session()
    base = f"{server.base_url}/{server.subscription_id}/cloudservices/cs1"
    assert session.put(base, data=CLOUD_SERVICE_XML).status_code == 202
    assert session.put(f"{base}/resources/scheduler/jobcollections/jc1",
                       data=collection_xml(plan)).status_code == 202
    return session, f"{base}/resources/scheduler/~/jobcollections/jc1/jobs"


def as_new_subscription(server: ServerProcess, directory: Path, name: str = "tenant"
                        ) -> ServerProcess:
    """The running `server` as a new subscription of its home sees it, with an admin
    certificate of its own (written in `directory`) from the home's CA: what a test makes
    there, no other test on the same server sees, so that tests can share one server.

    The view shares the server's process and output; it is never started or stopped itself.
    """
    settings = load_settings(server.home, env=server.env)
    now = datetime.now(UTC)
    admin = pki.issue_client_certificate(load_home_ca(settings), f"{name} admin", now)
    cert_file = directory / f"{name}-admin.pem"
    cert_file.write_bytes(admin.bundle_pem)
    cert_file.chmod(0o600)
    db = Database(settings.database_url)
    try:
        with db.transaction() as session:
            subscription_id = create_subscription(session, name, now)
            register_certificate(session, subscription_id, admin.certificate, now)
    finally:
        db.dispose()
    info = {**server.info, "subscriptionId": subscription_id, "clientCert": str(cert_file)}
    return replace(server, info=info)


class AttackerSite:
    """Another origin on loopback (plain HTTP, another port): it serves the pages it is
    given, by path."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """A page's address on this origin."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def auto_submitted_form(action: str, fields: dict[str, str], enctype: str) -> str:
    """A page that posts a form to `action` as soon as it loads."""
    inputs = "".join(f"<input type='hidden' name='{name}' value='{value}'>"
                     for name, value in fields.items())
    return (f"<!doctype html><form id='f' method='POST' action='{action}' enctype='{enctype}'>"
            f"{inputs}</form><script>document.getElementById('f').submit()</script>")


def browser_certificate(server: ServerProcess, directory: Path) -> list[dict[str, str]]:
    """Playwright's `client_certificates` for a browser that presents the subscription's
    admin certificate to the service, as a person who imported it would: its certificate
    and key in files of their own, written in `directory`."""
    pem = Path(str(server.info["clientCert"])).read_text()
    certificate = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                            pem, re.S)
    key = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n",
                    pem, re.S)
    assert certificate and key
    (directory / "cert.pem").write_text(certificate.group(0))
    (directory / "key.pem").write_text(key.group(0))
    return [{"origin": server.base_url, "certPath": str(directory / "cert.pem"),
             "keyPath": str(directory / "key.pem")}]


def schema_rows(schema: str, query: str) -> list[tuple[Any, ...]]:
    """The rows of a query on the test's PostgreSQL schema (`{schema}` in `query` names it)."""
    engine = create_engine(POSTGRES_URL)
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(text(query.format(schema=schema)))]
    engine.dispose()
    return rows
