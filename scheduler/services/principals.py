"""Service principals and the bearer tokens the service issues.

A service principal is a client id and secret registered to one subscription; the token
endpoint exchanges them, or a registered management certificate, for an opaque bearer token.
Only hashes are stored: of a principal's secret, and of each token's text. A token is looked
up by its hash on every bearer request, so that lookup is one compiled query.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from scheduler.db.compiled import CompiledStatement
from scheduler.db.models import AccessToken, ServicePrincipal
from scheduler.services.certificates import (
    certificate_name,
    is_authorized,
    subscriptions_of_certificate,
)
from scheduler.services.errors import BadRequest, NotFound
from scheduler.services.subscriptions import subscription_exists

TOKEN_LIFETIME = timedelta(hours=1)
MAX_NAME_LENGTH = 100
# A client id is a UUID as text; anything longer names no principal.
CLIENT_ID_LENGTH = 36
# Compared against when the client id is unknown, so that an unknown client costs what a
# wrong secret does.
_NO_SECRET_HASH = "0" * 64


@dataclass(frozen=True)
class NewPrincipal:
    """A service principal just made: the only place its secret is held in clear."""

    client_id: str
    name: str
    subscription_id: str
    secret: str
    created_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token as the token endpoint hands it out: its text and seconds to live."""

    text: str
    expires_in: int


@dataclass(frozen=True)
class TokenIdentity:
    """Who a bearer token stands for: a service principal (its client id and subscription)
    or a management certificate (its thumbprint)."""

    client_id: str | None
    subscription_id: str | None
    thumbprint: str | None
    name: str = ""  # whom the audit names: the principal's name, or the certificate's


def sha256_hex(text: str) -> str:
    """The SHA-256 of a text's UTF-8 bytes, as lower-case hex: how secrets and tokens are
    stored."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_principal_name(name: str) -> None:
    """Refuse a name that is blank or longer than 100 characters."""
    if not name.strip():
        raise BadRequest("A service principal needs a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"A service principal's name is at most {MAX_NAME_LENGTH} "
                         f"characters, not {len(name)}.")


def create_principal(session: Session, subscription_id: str, name: str, now: datetime
                     ) -> NewPrincipal:
    """Register a new service principal to the subscription: a new client id and secret, of
    which only the secret's hash is stored."""
    check_principal_name(name)
    if not subscription_exists(session, subscription_id):
        raise NotFound(f"The subscription {subscription_id} does not exist.")
    secret = secrets.token_urlsafe(32)
    principal = ServicePrincipal(client_id=str(uuid.uuid4()), subscription_id=subscription_id,
                                 name=name, secret_hash=sha256_hex(secret), created_at=now)
    session.add(principal)
    return NewPrincipal(client_id=principal.client_id, name=name,
                        subscription_id=subscription_id, secret=secret, created_at=now)


def list_principals(session: Session, subscription_id: str) -> list[ServicePrincipal]:
    """The subscription's service principals, by name, then oldest first."""
    query = (select(ServicePrincipal)
             .where(ServicePrincipal.subscription_id == subscription_id)
             .order_by(ServicePrincipal.name, ServicePrincipal.created_at,
                       ServicePrincipal.client_id))
    return list(session.scalars(query))


def delete_principal(session: Session, subscription_id: str, client_id: str) -> None:
    """Delete a service principal of the subscription and every token issued to it: they
    stop working at once."""
    principal = session.get(ServicePrincipal, client_id) \
        if len(client_id) <= CLIENT_ID_LENGTH else None
    if principal is None or principal.subscription_id != subscription_id:
        raise NotFound(f"The subscription has no service principal {client_id}.")
    # Not left to the foreign key's cascade: SQLite enforces it only where it is switched on.
    session.execute(delete(AccessToken).where(AccessToken.client_id == client_id))
    session.delete(principal)


def issue_token_for_secret(session: Session, client_id: str, secret: str, now: datetime
                           ) -> IssuedToken | None:
    """A new token for a service principal whose secret is right; None for an unknown client
    or a wrong secret."""
    principal = session.get(ServicePrincipal, client_id) \
        if len(client_id) <= CLIENT_ID_LENGTH else None
    stored = principal.secret_hash if principal is not None else _NO_SECRET_HASH
    if not hmac.compare_digest(sha256_hex(secret), stored) or principal is None:
        return None
    return _issue(session, now, client_id=client_id)


def issue_token_for_certificate(session: Session, thumbprint: str, now: datetime
                                ) -> IssuedToken | None:
    """A new token for a management certificate, by thumbprint; None if it is registered to
    no subscription. Which subscriptions it allows is decided each time it is used."""
    thumb = thumbprint.upper()
    if not subscriptions_of_certificate(session, thumb):
        return None
    return _issue(session, now, thumbprint=thumb)


def _issue(session: Session, now: datetime, client_id: str | None = None,
           thumbprint: str | None = None) -> IssuedToken:
    """Store a new token's hash, bound to a principal or a certificate, and clear away the
    tokens that have expired (one statement, by the index on their expiry)."""
    session.execute(delete(AccessToken).where(AccessToken.expires_at < now))
    text = secrets.token_urlsafe(32)
    session.add(AccessToken(token_hash=sha256_hex(text), client_id=client_id,
                            thumbprint=thumbprint, expires_at=now + TOKEN_LIFETIME,
                            created_at=now))
    return IssuedToken(text=text, expires_in=int(TOKEN_LIFETIME.total_seconds()))


class _TokenRow(NamedTuple):
    """A token found by its hash, with the principal it was issued to, if any is left."""

    client_id: str | None
    thumbprint: str | None
    principal_id: str | None
    subscription_id: str | None
    principal_name: str | None


# Compiled once: this runs on every bearer request. The outer join keeps certificate tokens,
# which have no principal, and shows a principal's token whose principal is gone.
_TOKEN = CompiledStatement(
    select(AccessToken.client_id, AccessToken.thumbprint,
           ServicePrincipal.client_id.label("principal_id"), ServicePrincipal.subscription_id,
           ServicePrincipal.name.label("principal_name"))
    .select_from(AccessToken)
    .outerjoin(ServicePrincipal, ServicePrincipal.client_id == AccessToken.client_id)
    .where(AccessToken.token_hash == bindparam("token_hash"),
           AccessToken.expires_at > bindparam("now")),
    _TokenRow,
)


def identity_of_token(conn: Connection, text: str, now: datetime) -> TokenIdentity | None:
    """Who a bearer token stands for; None if the service never issued it, it has expired,
    or its service principal was deleted."""
    row = _TOKEN.first(conn, {"token_hash": sha256_hex(text), "now": now})
    if row is None:
        return None
    if row.client_id is not None:
        if row.principal_id is None:
            return None
        return TokenIdentity(client_id=row.client_id, subscription_id=row.subscription_id,
                             thumbprint=None, name=row.principal_name or row.client_id)
    if row.thumbprint is None:
        return None
    return TokenIdentity(client_id=None, subscription_id=None, thumbprint=row.thumbprint,
                         name=certificate_name(conn, row.thumbprint))


def token_allows(conn: Connection, identity: TokenIdentity, subscription_id: str,
                 now: datetime) -> bool:
    """Whether a token's identity may act on the subscription: a principal on its own, a
    certificate on those it is registered to, unexpired, now."""
    if identity.client_id is not None:
        return identity.subscription_id == subscription_id
    if identity.thumbprint is not None:
        return is_authorized(conn, subscription_id, identity.thumbprint, now)
    return False
