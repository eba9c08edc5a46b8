"""`scheduler certs list|add|delete`, run as the real binary against a real `scheduler
serve`: the management certificates of the subscription."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scheduler.security import pki
from tests.client.served import cli, cli_json, failed
from tests.e2e.support import ServerProcess

PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?",
                             re.DOTALL)


def issue(served: ServerProcess, env: dict[str, str], name: str, out: Path) -> str:
    """A client certificate (and its key, one PEM) from the home's CA, registered nowhere;
    its thumbprint."""
    issued = cli(env, "cert", "issue", "--home", str(served.home), "--name", name,
                 "--out", str(out))
    assert issued.returncode == 0, issued.stderr
    return thumbprint(out)


def thumbprint(path: Path) -> str:
    """The thumbprint of the certificate in a PEM file."""
    return pki.thumbprint(pki.load_certificate(path.read_bytes()))


def listed(env: dict[str, str]) -> list[str]:
    """The thumbprints `certs list` shows."""
    return [c["thumbprint"] for c in cli_json(env, "certs", "list")]


def test_a_certificate_is_added_listed_used_and_deleted(
        served: ServerProcess, client_env: dict[str, str], tmp_path: Path) -> None:
    admin = thumbprint(Path(served.info["clientCert"]))
    table = cli(client_env, "certs", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["THUMBPRINT", "SUBJECT", "NOT", "AFTER",
                                                    "REGISTERED"]
    assert any(line.split()[:2] == [admin, "CN=scheduler"] for line in table.stdout.splitlines())

    ops = tmp_path / "ops.pem"  # its key is in the file too: never sent
    ops_thumbprint = issue(served, client_env, "ops", ops)
    refused = cli(client_env, "collections", "list", "--cert", str(ops))
    assert "(HTTP 403, ForbiddenError)" in failed(refused, 1)
    added = cli(client_env, "certs", "add", "--file", str(ops))
    assert added.returncode == 0, added.stderr
    assert f"thumbprint:  {ops_thumbprint}" in added.stdout
    assert "subject:     CN=ops" in added.stdout
    [document] = [c for c in cli_json(client_env, "certs", "list")
                  if c["thumbprint"] == ops_thumbprint]
    assert document["subject"] == "CN=ops" and document["issuer"] == "CN=scheduler home CA"
    assert document["notAfter"].endswith("Z") and document["created"]
    assert cli(client_env, "collections", "list", "--cert", str(ops)).returncode == 0

    again = cli(client_env, "certs", "add", "--file", str(ops))
    assert "is already registered" in failed(again, 1)

    written = ":".join(re.findall("..", ops_thumbprint.lower()))
    deleted = cli(client_env, "certs", "delete", written)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith(f"Deleted certificate {ops_thumbprint}")
    assert ops_thumbprint not in listed(client_env) and admin in listed(client_env)
    gone = cli(client_env, "collections", "list", "--cert", str(ops))
    assert "(HTTP 403, ForbiddenError)" in failed(gone, 1)
    twice = cli(client_env, "certs", "delete", ops_thumbprint)
    assert "(HTTP 404, ResourceNotFound)" in failed(twice, 1)


def test_deleting_the_certificate_the_command_connects_with_is_the_services_call(
        served: ServerProcess, client_env: dict[str, str], tmp_path: Path) -> None:
    own = tmp_path / "own.pem"
    own_thumbprint = issue(served, client_env, "own", own)
    assert cli(client_env, "certs", "add", "--file", str(own)).returncode == 0
    deleted = cli(client_env, "certs", "delete", own_thumbprint, "--cert", str(own))
    # The service lets a certificate unregister itself; the command says what that means.
    assert deleted.returncode == 0, deleted.stderr
    assert f"It was the certificate this command connected with ({own})" in deleted.stdout
    after = cli(client_env, "certs", "list", "--cert", str(own))
    assert "(HTTP 403, ForbiddenError)" in failed(after, 1)
    assert own_thumbprint not in listed(client_env)


def not_certificates(served: ServerProcess, tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """Files `certs add` refuses, and what it says of each."""
    ca = Path(served.info["caCert"]).read_bytes()
    admin = Path(served.info["clientCert"]).read_bytes()
    key_only = PEM_CERTIFICATE.sub(b"", admin)
    der = pki.der_bytes(pki.load_certificate(admin))
    broken = ca.replace(b"\n", b"\n!", 3)
    return {"job.json": (b'{"action": {}}', "not a PEM certificate (no '-----BEGIN"),
            "key.pem": (key_only, "not a PEM certificate (no '-----BEGIN"),
            "cert.der": (der, "not a PEM certificate (no '-----BEGIN"),
            "broken.pem": (broken, "not a PEM certificate that can be read"),
            "chain.pem": (ca + admin, "holds 2 certificates; give a file with the one")}


def test_a_file_that_is_not_one_pem_certificate_is_refused_before_anything_is_sent(
        served: ServerProcess, client_env: dict[str, str], tmp_path: Path) -> None:
    before = listed(client_env)
    for name, (content, expected) in not_certificates(served, tmp_path).items():
        path = tmp_path / name
        path.write_bytes(content)
        done = cli(client_env, "certs", "add", "--file", str(path))
        message = failed(done, 2)
        assert message.startswith(f"scheduler: {path}: {expected}"), name
        assert "nothing was sent" in message
    missing = cli(client_env, "certs", "add", "--file", str(tmp_path / "missing.pem"))
    assert "missing.pem: no such file" in failed(missing, 2)
    assert listed(client_env) == before


@pytest.mark.parametrize("written", ["zz", "..", "a/b", "AB" * 19 + "A", "AB" * 21])
def test_a_thumbprint_that_is_not_one_is_refused_before_anything_is_sent(
        client_env: dict[str, str], written: str) -> None:
    done = cli(client_env, "certs", "delete", written)
    assert failed(done, 2).startswith(f"scheduler: THUMBPRINT: the thumbprint {written!r} "
                                      "is not valid")
