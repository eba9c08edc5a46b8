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

from scheduler.api.health import HEALTH_PATHS
from scheduler.api.runtime import read_connection, runtime
from scheduler.errors import FORBIDDEN_MESSAGE, Forbidden
from scheduler.security import pki
from scheduler.services.certificates import is_authorized, is_registered_elsewhere, was_revoked

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


def authenticate() -> None:
    """Refuse the request unless its certificate is registered to the path's subscription;
    the health paths need none."""
    if request.path in HEALTH_PATHS:
        return
    rt = runtime()
    server = rt.settings.server
    der = peer_certificate(request.environ, server.trusted_proxies, server.client_cert_header)
    subscription_id = subscription_of_path(request.path)
    now = rt.clock.now()
    thumb = pki.thumbprint_of_der(der) if der is not None else ""
    if der is None or not subscription_id \
            or not is_authorized(read_connection(), subscription_id, thumb, now) \
            or not pki.valid_since(der, now):
        g.refusal = refusal_reason(der, thumb, subscription_id, now)
        raise Forbidden(FORBIDDEN_MESSAGE)
    g.subscription_id = subscription_id
    g.thumbprint = thumb


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
