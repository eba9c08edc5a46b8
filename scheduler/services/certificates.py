"""Management certificates: who may call the API for a subscription."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.orm import Session

from scheduler.db.compiled import CompiledStatement
from scheduler.db.models import ManagementCertificate, RegistryVersion, RevokedCertificate
from scheduler.security import pki
from scheduler.services.errors import BadRequest, Conflict, NotFound


def _bump_registry(session: Session) -> None:
    """Tell every server that the set of trusted certificates changed."""
    session.execute(
        update(RegistryVersion).where(RegistryVersion.id == 1)
        .values(version=RegistryVersion.version + 1)
    )


def register_certificate(
    session: Session, subscription_id: str, certificate: x509.Certificate, now: datetime,
    expected_thumbprint: str | None = None,
) -> ManagementCertificate:
    """Register a certificate to a subscription; 409 if it is registered already."""
    thumb = pki.thumbprint(certificate)
    if expected_thumbprint is not None and expected_thumbprint.upper() != thumb:
        raise BadRequest(
            f"SubscriptionCertificateThumbprint {expected_thumbprint} does not match "
            f"the certificate data (thumbprint {thumb})"
        )
    if session.get(ManagementCertificate, (subscription_id, thumb)) is not None:
        raise Conflict(f"The certificate {thumb} is already registered to this subscription.")
    session.execute(delete(RevokedCertificate).where(
        RevokedCertificate.subscription_id == subscription_id,
        RevokedCertificate.thumbprint == thumb))
    record = ManagementCertificate(
        subscription_id=subscription_id,
        thumbprint=thumb,
        der=pki.der_bytes(certificate),
        not_after=certificate.not_valid_after_utc,
        created_at=now,
    )
    session.add(record)
    _bump_registry(session)
    return record


def list_certificates(session: Session, subscription_id: str) -> list[ManagementCertificate]:
    """The subscription's certificates, oldest first."""
    query = (
        select(ManagementCertificate)
        .where(ManagementCertificate.subscription_id == subscription_id)
        .order_by(ManagementCertificate.created_at, ManagementCertificate.thumbprint)
    )
    return list(session.scalars(query))


def get_certificate(session: Session, subscription_id: str, thumb: str) -> ManagementCertificate:
    """One certificate of the subscription; 404 if it is not registered."""
    record = session.get(ManagementCertificate, (subscription_id, thumb.upper()))
    if record is None:
        raise NotFound(f"The certificate {thumb} is not registered to this subscription.")
    return record


def delete_certificate(session: Session, subscription_id: str, thumb: str, now: datetime
                       ) -> None:
    """Unregister a certificate; it stops working at once, and is remembered as revoked."""
    result = session.execute(
        delete(ManagementCertificate).where(
            ManagementCertificate.subscription_id == subscription_id,
            ManagementCertificate.thumbprint == thumb.upper(),
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"The certificate {thumb} is not registered to this subscription.")
    session.add(RevokedCertificate(subscription_id=subscription_id, thumbprint=thumb.upper(),
                                   revoked_at=now))
    _bump_registry(session)


# Compiled once: this runs on every request.
_NOT_AFTER = CompiledStatement(select(ManagementCertificate.not_after).where(
    ManagementCertificate.subscription_id == bindparam("subscription_id"),
    ManagementCertificate.thumbprint == bindparam("thumbprint"),
))


def is_authorized(conn: Connection, subscription_id: str, thumb: str, now: datetime) -> bool:
    """Whether a certificate, by thumbprint, is registered to the subscription and unexpired."""
    found = _NOT_AFTER.first(conn, {"subscription_id": subscription_id, "thumbprint": thumb})
    return found is not None and bool(found.not_after > now)


def was_revoked(conn: Connection, thumb: str, subscription_id: str) -> bool:
    """Whether a certificate, by thumbprint, was unregistered from the subscription."""
    query = select(RevokedCertificate.revoked_at).where(
        RevokedCertificate.subscription_id == subscription_id,
        RevokedCertificate.thumbprint == thumb)
    return conn.execute(query).first() is not None


def is_registered_elsewhere(conn: Connection, thumb: str, subscription_id: str) -> bool:
    """Whether a certificate, by thumbprint, is registered to a subscription other than this
    one."""
    query = select(ManagementCertificate.subscription_id).where(
        ManagementCertificate.thumbprint == thumb,
        ManagementCertificate.subscription_id != subscription_id).limit(1)
    return conn.execute(query).first() is not None


def subscriptions_of_certificate(session: Session, thumb: str) -> list[str]:
    """The subscriptions a certificate, by thumbprint, is registered to."""
    query = select(ManagementCertificate.subscription_id).where(
        ManagementCertificate.thumbprint == thumb.upper())
    return list(session.scalars(query))


def trusted_certificates(session: Session) -> list[bytes]:
    """Every registered certificate, DER, once each: the TLS server's trust anchors."""
    query = select(ManagementCertificate.thumbprint, ManagementCertificate.der)
    return list({thumb: der for thumb, der in session.execute(query)}.values())


def certificate_name(conn: Connection, thumb: str) -> str:
    """The name of a registered certificate (its subject's common name), or its thumbprint
    when it is registered nowhere."""
    der = conn.execute(select(ManagementCertificate.der)
                       .where(ManagementCertificate.thumbprint == thumb).limit(1)).scalar()
    return pki.name_of_der(der) if der is not None else thumb
