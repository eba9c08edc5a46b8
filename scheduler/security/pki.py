"""Certificates: the home CA, server and client certificates, thumbprints."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate alone, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The unencrypted private key, PEM (PKCS#8)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def bundle_pem(self) -> bytes:
        """Certificate and key in one PEM file, as HTTP clients take them."""
        return self.cert_pem + self.key_pem

    @property
    def thumbprint(self) -> str:
        """The SHA-1 thumbprint, upper-case hex."""
        return thumbprint(self.certificate)


def thumbprint_of_der(der: bytes) -> str:
    """Azure's thumbprint of a DER certificate: SHA-1, upper-case hex."""
    return hashlib.sha1(der).hexdigest().upper()


def name_of_der(der: bytes) -> str:
    """What people call a DER certificate: its subject's common name, else the whole subject,
    else its thumbprint."""
    try:
        subject = x509.load_der_x509_certificate(der).subject
    except ValueError:
        return thumbprint_of_der(der)
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        return str(names[0].value)
    return subject.rfc4514_string() or thumbprint_of_der(der)


def valid_since(der: bytes, now: datetime) -> bool:
    """Whether a DER certificate's validity has begun by `now` (its end is checked against
    the registration)."""
    try:
        return x509.load_der_x509_certificate(der).not_valid_before_utc <= now
    except ValueError:
        return False


def validity_of_der(der: bytes) -> tuple[datetime, datetime] | None:
    """A DER certificate's validity period (not before, not after); None when it does not
    read as a certificate."""
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return certificate.not_valid_before_utc, certificate.not_valid_after_utc


def host_names(certificate: x509.Certificate) -> list[str]:
    """The names a server certificate is made for: its DNS names, then its addresses, then
    its common name."""
    names = alternative_names(certificate)
    names += [str(attribute.value) for attribute in
              certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return names


def alternative_names(certificate: x509.Certificate) -> list[str]:
    """The names in a certificate's subject alternative names: DNS names, then addresses."""
    try:
        alternatives = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*(str(name) for name in alternatives.get_values_for_type(x509.DNSName)),
            *(str(address) for address in alternatives.get_values_for_type(x509.IPAddress))]


# The names every server certificate of a home is made for, so that the command-line client
# and the tests on the server's own machine reach it.
LOCAL_HOST_NAMES = ("localhost", "127.0.0.1", "::1")
# A DNS name's label: letters, digits and inner hyphens, 1 to 63 of them (RFC 1123).
DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def host_name_problem(name: str) -> str | None:
    """Why `name` cannot be put in a server certificate: neither an IP address nor a DNS
    name (labels of letters, digits and inner hyphens; a leading `*.` for a wildcard); None
    if it can."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return "an IPv6 address with a zone (%...) cannot be named in a certificate"
    if address is not None:
        return None
    if not name or len(name) > 253:
        return "a host name is 1 to 253 characters long"
    labels = name.lower().removesuffix(".").split(".")
    if labels[-1].isdigit():
        return "it reads as an IP address but is not one, and a DNS name's last label has a letter"
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]  # a wildcard stands for the leftmost label alone
    for label in labels:
        if not DNS_LABEL.fullmatch(label):
            return ("it is neither an IP address nor a DNS name: each dot-separated label is "
                    "1 to 63 letters, digits and hyphens, neither starting nor ending with a "
                    f"hyphen, and {label!r} is not")
    return None


def server_host_names(names: list[str]) -> list[str]:
    """The names a server certificate is made for: `names` (addresses in their canonical
    form, DNS names in lower case), then the local ones, each once."""
    chosen: list[str] = []
    for name in [*names, *LOCAL_HOST_NAMES]:
        try:
            name = str(ipaddress.ip_address(name))
        except ValueError:
            name = name.lower().removesuffix(".")
        if name not in chosen:
            chosen.append(name)
    return chosen


# The last instant an X.509 validity period can name (GeneralizedTime has four-digit years).
LATEST_NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def validity_days_problem(days: int, now: datetime) -> str | None:
    """Why a certificate issued at `now` to be valid for `days` days could not be used: its
    validity would have ended when it is made, or would end past what X.509 can name."""
    if days < 1:
        return (f"a certificate valid for {days} days from now has ended before it can be "
                "used; give 1 day or more")
    if days > (LATEST_NOT_AFTER - now).days:
        return (f"{days} days from now is past {LATEST_NOT_AFTER:%Y-%m-%d}, the last day a "
                "certificate can be valid")
    return None


def thumbprint(certificate: x509.Certificate) -> str:
    """Azure's thumbprint of a certificate."""
    return thumbprint_of_der(certificate.public_bytes(serialization.Encoding.DER))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime, days: int,
    not_before: datetime | None = None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )


def _sign(
    builder: x509.CertificateBuilder, key: CertificateIssuerPrivateKeyTypes
) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(common_name: str, now: datetime, days: int = 3650) -> IssuedCertificate:
    """A self-signed certificate authority."""
    key = new_key()
    builder = _builder(common_name, _name(common_name), key, now, days).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    ).add_extension(
        x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        ),
        critical=True,
    )
    return IssuedCertificate(_sign(builder, key), key)


def issue_server_certificate(
    ca: IssuedCertificate, hosts: list[str], now: datetime, days: int = 825
) -> IssuedCertificate:
    """A TLS server certificate for the given host names and addresses."""
    key = new_key()
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    builder = (
        _builder(hosts[0], ca.certificate.subject, key, now, days)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    return IssuedCertificate(_sign(builder, ca.key), key)


def issue_client_certificate(
    ca: IssuedCertificate | None,
    common_name: str,
    now: datetime,
    days: int = 825,
    not_before: datetime | None = None,
) -> IssuedCertificate:
    """A client (management) certificate, issued by `ca` or self-signed when `ca` is None."""
    key = new_key()
    issuer = ca.certificate.subject if ca else _name(common_name)
    builder = _builder(common_name, issuer, key, now, days, not_before).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    return IssuedCertificate(_sign(builder, ca.key if ca else key), key)


def load_issued(cert_pem: bytes, key_pem: bytes) -> IssuedCertificate:
    """Read a certificate and its key from PEM."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("only EC keys are used by the home CA")
    return IssuedCertificate(x509.load_pem_x509_certificate(cert_pem), key)


def load_certificate(data: bytes) -> x509.Certificate:
    """Read one certificate given as PEM or DER."""
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def der_bytes(certificate: x509.Certificate) -> bytes:
    """The DER encoding of a certificate."""
    return certificate.public_bytes(serialization.Encoding.DER)


def pem_bytes(certificate: x509.Certificate) -> bytes:
    """The PEM encoding of a certificate."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def public_key_der(certificate: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo, DER."""
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
