"""`scheduler certs list|add|delete`: the management certificates that may call the API for
the subscription. Exit codes: see `runner`.

Certificates are read with `cryptography`, imported inside the functions that need it so
that every other client command starts without it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.client import render
from scheduler.client.errors import InputError
from scheduler.client.http import ApiClient
from scheduler.client.profile import Connection
from scheduler.client.runner import Output, Subcommands, leaf


@dataclass(frozen=True)
class Certificate:
    """A certificate to register: its DER, its thumbprint and its public key's DER."""

    der: bytes
    thumbprint: str
    public_key_der: bytes


def read_pem_certificate(name: str) -> Certificate:
    """The one certificate of a PEM file, or an InputError naming the file and what is
    wrong with it; nothing is sent before this has read it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot be read: {exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InputError(f"{name}: not a PEM certificate (no '-----BEGIN CERTIFICATE-----' "
                         "block); nothing was sent")
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InputError(f"{name}: not a PEM certificate that can be read: {exc}; nothing "
                         "was sent") from None
    if len(found) != 1:
        raise InputError(f"{name}: holds {len(found)} certificates; give a file with the one "
                         "to register; nothing was sent")
    certificate = found[0]
    der = certificate.public_bytes(serialization.Encoding.DER)
    public_key = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Certificate(der, thumbprint_of_der(der), public_key)


def thumbprint_of_der(der: bytes) -> str:
    """Azure's thumbprint of a certificate: the SHA-1 of its DER, upper-case hex."""
    return hashlib.sha1(der).hexdigest().upper()


def described(record: dict[str, Any]) -> dict[str, Any]:
    """A certificate as the service lists it, with what its DER says: subject, issuer and
    validity (None where the DER cannot be read)."""
    from cryptography import x509

    document = {"thumbprint": record.get("thumbprint"), "subject": None, "issuer": None,
                "notBefore": None, "notAfter": None, "created": record.get("created")}
    try:
        certificate = x509.load_der_x509_certificate(
            base64.b64decode(record.get("data") or "", validate=True))
    except (ValueError, binascii.Error):
        return document
    document.update(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        notBefore=_utc_text(certificate.not_valid_before_utc.isoformat()),
        notAfter=_utc_text(certificate.not_valid_after_utc.isoformat()))
    return document


def _utc_text(isoformat: str) -> str:
    """`2030-01-01T00:00:00+00:00` written as the service writes times, with a `Z`."""
    return isoformat.removesuffix("+00:00") + "Z"


def certs_list(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`certs list`."""
    found = [described(record) for record in api.list_certificates()]
    return Output(found, render.certificates_table(found))


def certs_add(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`certs add --file PEM`: the certificate registered, as the service now has it."""
    certificate = read_pem_certificate(args.file)
    api.add_certificate(certificate.der, certificate.thumbprint, certificate.public_key_der)
    registered = described(api.get_certificate(certificate.thumbprint))
    return Output(registered, render.certificate_fields(registered))


def certs_delete(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`certs delete THUMBPRINT`. The service decides whether the certificate this command
    is connected with may go; if it went, nothing more is sent with it."""
    api.delete_certificate(args.thumbprint)
    text = f"Deleted certificate {args.thumbprint}: calls made with it fail from now on."
    if args.thumbprint == own_thumbprint(connection.cert):
        text += (f"\nIt was the certificate this command connected with ({connection.cert});"
                 " register another to go on.")
    return Output(None, text)


def own_thumbprint(path: Path) -> str | None:
    """The thumbprint of the certificate in the client's PEM file, if it can be read."""
    try:
        return read_pem_certificate(str(path)).thumbprint
    except InputError:
        return None


def add_certs_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler certs list|add|delete`."""
    certs = commands.add_parser("certs", help="the subscription's management certificates, "
                                "through the HTTPS API")
    group = certs.add_subparsers(dest="action", required=True)
    leaf(group, "list", certs_list, "list the certificates that may call the API for the "
         "subscription", common, job_id=False)
    add = leaf(group, "add", certs_add, "register a certificate: it may call the API at once",
               common, job_id=False)
    add.add_argument("--file", "-f", required=True, help="the certificate, a PEM file (a key "
                     "in it is not read, and never sent)")
    delete = leaf(group, "delete", certs_delete, "unregister a certificate: calls made with "
                  "it fail from now on", common, job_id=False)
    delete.add_argument("thumbprint", metavar="THUMBPRINT",
                        help="its SHA-1 thumbprint, 40 hexadecimal digits (':' allowed)")
