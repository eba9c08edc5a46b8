"""Real mutual-TLS authentication against a real `scheduler serve`.

Most tests share the module's server, each registering certificates to a subscription of its
own; those that reconfigure the server, or count what it logs, start their own."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.certificates import register_certificate
from scheduler.settings import load_settings
from tests.e2e.support import BIN, ServerProcess, free_port, wait_for

AZURE_NS = "http://schemas.microsoft.com/windowsazure"


# --- helpers -------------------------------------------------------------------------------

@pytest.fixture
def server(own_subscription: ServerProcess) -> ServerProcess:
    """The module's shared server, as a subscription of the test's own sees it."""
    return own_subscription


def write_pem(tmp_path: Path, name: str, issued: pki.IssuedCertificate) -> str:
    """A client PEM (certificate + key) in tmp_path."""
    path = tmp_path / f"{name}.pem"
    path.write_bytes(issued.bundle_pem)
    return str(path)


def self_signed(name: str) -> pki.IssuedCertificate:
    return pki.issue_client_certificate(None, name, datetime.now(UTC))


def home_ca(server: ServerProcess) -> pki.IssuedCertificate:
    home = Path(server.info["home"])
    return pki.load_issued((home / "ca.pem").read_bytes(), (home / "ca-key.pem").read_bytes())


def certificate_xml(issued: pki.IssuedCertificate) -> str:
    public_key = base64.b64encode(pki.public_key_der(issued.certificate)).decode()
    data = base64.b64encode(pki.der_bytes(issued.certificate)).decode()
    return (
        f'<SubscriptionCertificate xmlns="{AZURE_NS}">'
        f"<SubscriptionCertificatePublicKey>{public_key}</SubscriptionCertificatePublicKey>"
        f"<SubscriptionCertificateThumbprint>{issued.thumbprint}"
        "</SubscriptionCertificateThumbprint>"
        f"<SubscriptionCertificateData>{data}</SubscriptionCertificateData>"
        "</SubscriptionCertificate>"
    )


def register(server: ServerProcess, issued: pki.IssuedCertificate,
             subscription: str | None = None) -> None:
    """Register a certificate through the API, with the admin certificate."""
    with server.session() as admin:
        response = admin.post(
            f"{server.base_url}/{subscription or server.subscription_id}/certificates",
            data=certificate_xml(issued), headers={"Content-Type": "application/xml"},
        )
    assert response.status_code == 201, response.text


def unregister(server: ServerProcess, thumbprint: str) -> None:
    with server.session() as admin:
        response = admin.delete(
            f"{server.base_url}/{server.subscription_id}/certificates/{thumbprint}")
    assert response.status_code == 200, response.text


def services_url(server: ServerProcess, subscription: str | None = None) -> str:
    return f"{server.base_url}/{subscription or server.subscription_id}/cloudservices"


def get_with(server: ServerProcess, cert: str | None, subscription: str | None = None
             ) -> requests.Response:
    """One request on a fresh session (a new TLS connection) presenting `cert`."""
    session = server.session(cert)
    if cert is None:
        session.cert = None
    with session:
        return session.get(services_url(server, subscription), timeout=10)


def assert_forbidden(response: requests.Response) -> None:
    assert response.status_code == 403, response.text
    assert "<Code>ForbiddenError</Code>" in response.text
    assert "<Message>" in response.text
    assert response.headers.get("x-ms-request-id")


def assert_refused(server: ServerProcess, cert: str, subscription: str | None = None) -> str:
    """Refused in the TLS handshake, or answered 403 ForbiddenError; says which."""
    try:
        response = get_with(server, cert, subscription)
    except requests.exceptions.SSLError:
        return "handshake"
    except requests.exceptions.ConnectionError as exc:
        # With TLS 1.3 the server checks the client certificate after the client thinks the
        # handshake is done; its alert can surface as a reset connection.
        assert "ssl" in repr(exc).lower() or "reset" in repr(exc).lower() or \
            "aborted" in repr(exc).lower(), repr(exc)
        return "handshake"
    assert_forbidden(response)
    return "403"


def run_cli(server: ServerProcess, *args: str) -> str:
    result = subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, env=server.env, timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# --- accepted ------------------------------------------------------------------------------

def test_admin_certificate_from_init_is_accepted(shared_server: ServerProcess) -> None:
    response = get_with(shared_server, str(shared_server.info["clientCert"]))
    assert response.status_code == 200
    assert "<CloudServices" in response.text


def test_self_signed_certificates_with_the_same_subject_all_work_without_restart(
    server: ServerProcess, tmp_path: Path,
) -> None:
    twins = [self_signed("same subject") for _ in range(3)]
    assert len({t.thumbprint for t in twins}) == 3
    paths = [write_pem(tmp_path, f"twin{i}", t) for i, t in enumerate(twins)]

    for issued, path in zip(twins, paths, strict=True):
        # Not trusted before it is registered...
        assert_refused(server, path)
        register(server, issued)
        # ...and accepted at once, on a new connection, with no restart.
        response = get_with(server, path)
        assert response.status_code == 200, response.text

    # Every twin still works once all are registered (same subject name, different keys).
    for path in paths:
        assert get_with(server, path).status_code == 200

    with server.session() as admin:
        listed = admin.get(f"{server.base_url}/{server.subscription_id}/certificates").text
    for issued in twins:
        assert issued.thumbprint in listed


def test_home_ca_certificate_registered_through_the_api_works(
    server: ServerProcess, tmp_path: Path,
) -> None:
    issued = pki.issue_client_certificate(home_ca(server), "ca-issued", datetime.now(UTC))
    path = write_pem(tmp_path, "ca-issued", issued)
    assert_forbidden(get_with(server, path))
    register(server, issued)
    assert get_with(server, path).status_code == 200


def test_cli_cert_issue_with_subscription_issues_a_working_certificate(
    server: ServerProcess, tmp_path: Path,
) -> None:
    out = tmp_path / "cli.pem"
    thumbprint = run_cli(server, "cert", "issue", "--home", str(server.home), "--name", "x",
                         "--out", str(out), "--subscription", server.subscription_id)
    assert thumbprint == pki.thumbprint(pki.load_certificate(out.read_bytes()))
    response = get_with(server, str(out))
    assert response.status_code == 200, response.text
    with server.session() as admin:
        one = admin.get(
            f"{server.base_url}/{server.subscription_id}/certificates/{thumbprint}")
    assert one.status_code == 200
    assert f"<SubscriptionCertificateThumbprint>{thumbprint}<" in one.text


# --- refused -------------------------------------------------------------------------------

def test_unknown_self_signed_certificate_is_refused(shared_server: ServerProcess,
                                                    tmp_path: Path) -> None:
    path = write_pem(tmp_path, "stranger", self_signed("stranger"))
    assert_refused(shared_server, path)


def test_unknown_self_signed_certificate_with_a_registered_subject_is_refused(
    server: ServerProcess, tmp_path: Path,
) -> None:
    registered = self_signed("shared name")
    register(server, registered)
    impostor = write_pem(tmp_path, "impostor", self_signed("shared name"))
    assert_refused(server, impostor)
    assert get_with(server, write_pem(tmp_path, "registered", registered)).status_code == 200


def test_unregistered_home_ca_certificate_gets_403(shared_server: ServerProcess, tmp_path: Path
                                                   ) -> None:
    issued = pki.issue_client_certificate(home_ca(shared_server), "not registered",
                                          datetime.now(UTC))
    assert_forbidden(get_with(shared_server, write_pem(tmp_path, "unregistered", issued)))


def test_no_certificate_gets_403(shared_server: ServerProcess) -> None:
    assert_forbidden(get_with(shared_server, None))
    session = shared_server.session()
    session.cert = None
    with session:
        response = session.get(
            f"{shared_server.base_url}/{shared_server.subscription_id}/certificates")
    assert_forbidden(response)


@pytest.mark.parametrize("issuer", ["home-ca", "self-signed"])
def test_expired_certificate_is_refused_even_when_registered(
    server: ServerProcess, tmp_path: Path, issuer: str,
) -> None:
    past = datetime.now(UTC) - timedelta(days=30)
    ca = home_ca(server) if issuer == "home-ca" else None
    # Valid from `past` - 5 min to `past` + 1 day. (Passing `not_before` as well makes
    # pki.issue_client_certificate raise: it sets not_valid_before twice.)
    expired = pki.issue_client_certificate(ca, "expired", past, days=1)
    assert expired.certificate.not_valid_after_utc < datetime.now(UTC)
    path = write_pem(tmp_path, "expired", expired)

    assert_refused(server, path)  # unregistered
    with server.session() as admin:
        response = admin.post(
            f"{server.base_url}/{server.subscription_id}/certificates",
            data=certificate_xml(expired), headers={"Content-Type": "application/xml"},
        )
    # Registering an expired certificate may be refused; either way it must not work.
    assert response.status_code in (201, 400), response.text
    how = assert_refused(server, path)
    if response.status_code == 201:  # registered: refused by the app, not in the handshake
        assert how == "403"


@pytest.mark.parametrize("issuer", ["home-ca", "self-signed"])
def test_a_registered_certificate_not_valid_yet_gets_403(
    server: ServerProcess, tmp_path: Path, issuer: str,
) -> None:
    soon = datetime.now(UTC) + timedelta(days=2)
    ca = home_ca(server) if issuer == "home-ca" else None
    early = pki.issue_client_certificate(ca, "early", soon, days=30)
    assert early.certificate.not_valid_before_utc > datetime.now(UTC)
    path = write_pem(tmp_path, "early", early)
    with server.session() as admin:
        response = admin.post(
            f"{server.base_url}/{server.subscription_id}/certificates",
            data=certificate_xml(early), headers={"Content-Type": "application/xml"},
        )
    assert response.status_code in (201, 400), response.text
    how = assert_refused(server, path)
    if response.status_code == 201:
        assert how == "403"


def test_certificate_of_another_subscription_is_refused_here_and_accepted_there(
    server: ServerProcess, tmp_path: Path,
) -> None:
    other_cert = self_signed("other tenant")
    other_pem = write_pem(tmp_path, "other", other_cert)
    other = run_cli(server, "subscription", "create", "--home", str(server.home),
                    "--name", "other", "--cert", other_pem)
    assert other and other != server.subscription_id

    # Registered by the CLI while the server runs: trusted without a restart.
    response = get_with(server, other_pem, other)
    assert response.status_code == 200, response.text
    assert "<CloudServices" in response.text

    assert_forbidden(get_with(server, other_pem))
    with server.session(other_pem) as session:
        assert_forbidden(session.get(
            f"{server.base_url}/{server.subscription_id}/certificates"))
        assert_forbidden(session.put(
            f"{server.base_url}/{server.subscription_id}/cloudservices/stolen",
            data="<CloudService xmlns='http://schemas.microsoft.com/windowsazure'>"
                 "<Label>x</Label><GeoRegion>West Europe</GeoRegion></CloudService>",
            headers={"Content-Type": "application/xml"}))

    # And the admin of the first subscription cannot use the other one.
    assert_forbidden(get_with(server, str(server.info["clientCert"]), other))


def test_deleted_certificate_stops_working_at_once_on_an_open_connection(
    server: ServerProcess, tmp_path: Path,
) -> None:
    issued = self_signed("soon deleted")
    register(server, issued)
    path = write_pem(tmp_path, "deleted", issued)

    with server.session(path) as session:
        url = services_url(server)
        first = session.get(url, timeout=10)
        assert first.status_code == 200, first.text
        pools = session.get_adapter(url).poolmanager.pools
        assert len(pools) == 1
        pool = pools[next(iter(pools.keys()))]
        assert pool.num_connections == 1

        unregister(server, issued.thumbprint)

        second = session.get(url, timeout=10)
        # The same keep-alive connection carried the second request...
        assert pool.num_connections == 1
        # ...and was refused all the same.
        assert_forbidden(second)

    # New connections are refused too.
    assert_refused(server, path)


def test_deleted_home_ca_certificate_gets_403(server: ServerProcess, tmp_path: Path) -> None:
    issued = pki.issue_client_certificate(home_ca(server), "to delete", datetime.now(UTC))
    register(server, issued)
    path = write_pem(tmp_path, "ca-deleted", issued)
    assert get_with(server, path).status_code == 200
    unregister(server, issued.thumbprint)
    assert_forbidden(get_with(server, path))


# --- what the operator sees of a refusal ----------------------------------------------------

def register_in_database(server: ServerProcess, issued: pki.IssuedCertificate) -> None:
    """Register a certificate to the server's subscription as the CLI does, straight in its
    database, whatever its validity."""
    db = Database(load_settings(server.home, env={}).database_url)
    try:
        with db.transaction() as session:
            register_certificate(session, server.subscription_id, issued.certificate,
                                 datetime.now(UTC))
    finally:
        db.dispose()


def scrape(port: int) -> str:
    """The metrics page of a serve, over plain HTTP."""
    session = requests.Session()
    session.trust_env = False
    with session:
        return session.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_each_refused_certificate_is_logged_and_counted_with_its_reason_behind_one_403(
    server_factory: Any, tmp_path: Path,
) -> None:
    metrics_port = free_port()
    server: ServerProcess = server_factory(env={"SCHEDULER_METRICS_PORT": str(metrics_port)})
    ca, now = home_ca(server), datetime.now(UTC)
    expired = pki.issue_client_certificate(ca, "expired", now - timedelta(days=30), days=1)
    early = pki.issue_client_certificate(ca, "early", now + timedelta(days=2), days=30)
    for issued in (expired, early):
        register_in_database(server, issued)
    other_pem = write_pem(tmp_path, "other", self_signed("other tenant"))
    run_cli(server, "subscription", "create", "--home", str(server.home), "--name", "other",
            "--cert", other_pem)
    presented = {
        "no-certificate": None,
        "unknown": write_pem(tmp_path, "unknown", pki.issue_client_certificate(
            ca, "unregistered", now)),
        "expired": write_pem(tmp_path, "expired", expired),
        "not-yet-valid": write_pem(tmp_path, "early", early),
        "other-subscription": other_pem,
    }
    answers = [get_with(server, cert) for cert in presented.values()]
    for answer in answers:
        assert_forbidden(answer)
    assert {(a.status_code, a.headers["Content-Type"], a.content) for a in answers} == {
        (answers[0].status_code, answers[0].headers["Content-Type"], answers[0].content)}
    untrusted = write_pem(tmp_path, "untrusted", self_signed("stranger"))
    assert assert_refused(server, untrusted) == "handshake"

    reasons = [*presented, "untrusted"]

    def logged() -> list[str]:
        return [reason for reason in reasons
                if any("scheduler.access" in line and f" auth={reason} " in line
                       for line in list(server.output))]
    assert wait_for(lambda: logged() == reasons, 60), "".join(server.output[-20:])
    [handshake] = [line for line in server.output if " auth=untrusted " in line]
    assert "TLS handshake refused a client certificate: self-signed certificate" in handshake
    page = scrape(metrics_port)
    for reason in reasons:
        assert f'scheduler_api_auth_failures_total{{reason="{reason}"}} 1.0' in page, page


# --- the server's own certificate ----------------------------------------------------------

def connect(server: ServerProcess, name: str) -> ssl.SSLSocket:
    """A new TLS connection to the server, checking its certificate against `name`."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return server.ssl_context().wrap_socket(raw, server_hostname=name)


def health_on(connection: ssl.SSLSocket) -> int:
    """One GET /healthz on an open connection, which stays open after it: the status."""
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = connection.recv(65536)
        assert chunk, "the server closed the connection"
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length is not None
    while len(body) < int(length.group(1)):
        body += connection.recv(65536)
    return int(head.split()[1])


def serial_of(connection: ssl.SSLSocket) -> int:
    """The serial number of the certificate the server presented on a connection."""
    return int(connection.getpeercert()["serialNumber"], 16)


def serves_serial(server: ServerProcess, name: str, serial: int) -> bool:
    """Whether a new connection, checked against `name`, gets the certificate `serial`."""
    try:
        with connect(server, name) as connection:
            return serial_of(connection) == serial
    except ssl.SSLCertVerificationError:  # the certificate of before: not for `name`
        return False


def test_a_renewed_server_certificate_serves_new_connections_without_a_restart(
        server_factory: Any) -> None:
    server: ServerProcess = server_factory()
    home = Path(server.info["home"])
    kept_alive = connect(server, "localhost")
    try:
        assert health_on(kept_alive) == 200
        first = serial_of(kept_alive)
        output = run_cli(server, "cert", "server", "--home", str(home),
                         "--host-name", "renewed.example")
        renewed = pki.load_certificate((home / "server.pem").read_bytes())
        assert f"thumbprint {pki.thumbprint(renewed)}" in output
        assert renewed.serial_number != first
        assert wait_for(lambda: serves_serial(server, "renewed.example",
                                              renewed.serial_number), 30)
        # The connection opened before goes on, with the certificate it began with.
        assert health_on(kept_alive) == 200
        assert serial_of(kept_alive) == first
    finally:
        kept_alive.close()


def test_a_server_key_that_does_not_match_keeps_the_last_certificate_with_one_warning(
        server_factory: Any) -> None:
    server: ServerProcess = server_factory()
    home = Path(server.info["home"])
    serial = pki.load_certificate((home / "server.pem").read_bytes()).serial_number
    (home / "server-key.pem").write_bytes(self_signed("another key").key_pem)

    def warned() -> list[str]:
        return [line for line in server.output if "do not load" in line]

    def still_served_and_warned() -> bool:
        assert serves_serial(server, "localhost", serial)
        return bool(warned())

    assert wait_for(still_served_and_warned, 30)
    assert f"the server certificate {home / 'server.pem'} and key" in warned()[0]
    for _ in range(10):
        assert serves_serial(server, "localhost", serial)
    assert len(warned()) <= 2  # once for each of the API's worker processes
