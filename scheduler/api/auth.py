"""Who is calling: the client certificate's thumbprint, checked against the subscription."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from flask import Flask, g, request

from scheduler.api.arm.paths import is_arm_path, is_token_path, subscription_of_arm_path
from scheduler.api.dashboard_paths import is_dashboard_path
from scheduler.api.health import HEALTH_PATHS
from scheduler.api.runtime import read_connection, runtime
from scheduler.domain.callbacks import is_callback_path
from scheduler.errors import (
    FORBIDDEN_MESSAGE,
    AuthenticationFailed,
    AuthorizationFailed,
    Forbidden,
)
from scheduler.security import pki
from scheduler.services.certificates import is_authorized, is_registered_elsewhere, was_revoked
from scheduler.services.principals import identity_of_token, token_allows

# Tests and in-process callers hand the DER certificate over in the WSGI environment; no
# HTTP header can set this key.
PEER_CERT_ENVIRON = "scheduler.peer_cert_der"
_PEM_BODY = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def peer_certificate(environ: dict[str, Any], trusted_proxies: tuple[str, ...],
                     header: str) -> bytes | None:
    """The DER client certificate of this request: from TLS, or from a trusted proxy."""
    der = environ.get(PEER_CERT_ENVIRON)
    if der is not None:
        return bytes(der)
    sock = environ.get("gunicorn.socket")
    if sock is not None and hasattr(sock, "getpeercert"):
        der = sock.getpeercert(binary_form=True)
        if der:
            return bytes(der)
    if _from_trusted_proxy(environ.get("REMOTE_ADDR", ""), trusted_proxies):
        value = environ.get("HTTP_" + header.upper().replace("-", "_"))
        if value:
            return _decode_forwarded_certificate(value)
    return None


def _from_trusted_proxy(address: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)


def _decode_forwarded_certificate(value: str) -> bytes | None:
    """Proxies forward the certificate as URL-encoded PEM or as bare base64 DER."""
    text = unquote(value)
    match = _PEM_BODY.search(text)
    body = match.group(1) if match else text
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def subscription_of_path(path: str) -> str:
    """The subscription id: the first segment of every path."""
    return path.lstrip("/").split("/", 1)[0]


class Refusal(StrEnum):
    """Why authentication refused a request. The client gets the same 403 whatever the
    reason, as from Azure; the access log and a metric name it for the operator."""

    NO_CERTIFICATE = "no-certificate"
    UNKNOWN = "unknown"  # registered to no subscription (or not a certificate)
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REVOKED = "revoked"  # unregistered from the path's subscription
    OTHER_SUBSCRIPTION = "other-subscription"  # registered, but not to the path's
    NO_TOKEN = "no-token"  # Resource Manager: neither a registered certificate nor a token
    BAD_TOKEN = "bad-token"  # unknown, expired, or its service principal was deleted
    TOKEN_OTHER_SUBSCRIPTION = "token-other-subscription"


def authenticate() -> None:
    """Refuse the request unless its certificate is registered to the path's subscription
    (or, on Resource Manager's routes, its bearer token is good for it); the health paths
    and the token endpoints need neither, the dashboard checks its own sessions, and a
    callback URL's token is its credential."""
    if request.path in HEALTH_PATHS or is_token_path(request.path) \
            or is_dashboard_path(request.path) or is_callback_path(request.path):
        return
    if is_arm_path(request.path):
        authenticate_arm()
        return
    der, thumb, now = presented_certificate()
    subscription_id = subscription_of_path(request.path)
    if der is None or not subscription_id \
            or not is_authorized(read_connection(), subscription_id, thumb, now) \
            or not pki.valid_since(der, now):
        g.refusal = refusal_reason(der, thumb, subscription_id, now)
        raise Forbidden(FORBIDDEN_MESSAGE)
    g.subscription_id = subscription_id
    g.thumbprint = thumb
    g.certificate = der  # named for the audit only by a call that writes


def presented_certificate() -> tuple[bytes | None, str, datetime]:
    """The request's client certificate (DER, from TLS or a trusted proxy), its thumbprint
    ("" without one), and the time it is judged at."""
    rt = runtime()
    server = rt.settings.server
    der = peer_certificate(request.environ, server.trusted_proxies, server.client_cert_header)
    return der, pki.thumbprint_of_der(der) if der is not None else "", rt.clock.now()


def authenticate_arm() -> None:
    """A Resource Manager request: a management certificate registered to the path's
    subscription will do, as on the ASM API; else a bearer token the service issued for it.
    A caller not known at all gets 401, one known without rights on the subscription 403."""
    der, thumb, now = presented_certificate()
    subscription_id = subscription_of_arm_path(request.path)
    if der is not None and subscription_id and pki.valid_since(der, now) \
            and is_authorized(read_connection(), subscription_id, thumb, now):
        g.subscription_id, g.thumbprint = subscription_id, thumb
        g.certificate = der
        return
    token = bearer_token()
    if token is None:
        reason = refusal_reason(der, thumb, subscription_id, now)
        g.refusal = reason if der is not None else Refusal.NO_TOKEN
        if reason == Refusal.OTHER_SUBSCRIPTION:
            raise AuthorizationFailed(_no_rights("The client certificate", subscription_id))
        raise AuthenticationFailed("The request carries no bearer token the service issued, "
                                   "and no management certificate registered to the "
                                   "subscription.")
    identity = identity_of_token(read_connection(), token, now)
    if identity is None:
        g.refusal = Refusal.BAD_TOKEN
        raise AuthenticationFailed("The access token is not valid: it is unknown, has "
                                   "expired, or its service principal was deleted.",
                                   token_sent=True)
    if not token_allows(read_connection(), identity, subscription_id, now):
        g.refusal = Refusal.TOKEN_OTHER_SUBSCRIPTION
        who = (f"The service principal {identity.client_id}" if identity.client_id
               else f"The certificate {identity.thumbprint}")
        raise AuthorizationFailed(_no_rights(who, subscription_id))
    g.subscription_id = subscription_id
    g.thumbprint = identity.thumbprint or ""
    g.client_id = identity.client_id
    g.actor = identity.name


def _no_rights(who: str, subscription_id: str) -> str:
    return f"{who} does not have authorization to act on subscription {subscription_id}."


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer` header, if the request has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def refusal_reason(der: bytes | None, thumb: str, subscription_id: str, now: datetime
                   ) -> Refusal:
    """Why a certificate does not authorize a request for the subscription: looked into only
    once it is refused, so that an accepted request costs one query."""
    if der is None:
        return Refusal.NO_CERTIFICATE
    validity = pki.validity_of_der(der)
    if validity is None:
        return Refusal.UNKNOWN
    not_before, not_after = validity
    if now < not_before:
        return Refusal.NOT_YET_VALID
    if not_after <= now:
        return Refusal.EXPIRED
    if was_revoked(read_connection(), thumb, subscription_id):
        return Refusal.REVOKED
    if is_registered_elsewhere(read_connection(), thumb, subscription_id):
        return Refusal.OTHER_SUBSCRIPTION
    return Refusal.UNKNOWN


def refusal() -> str | None:
    """Why authentication refused this request, if it did."""
    reason: Refusal | None = g.get("refusal")
    return reason.value if reason is not None else None


def init_app(app: Flask) -> None:
    """Check every request before it reaches a route."""
    app.before_request(authenticate)
