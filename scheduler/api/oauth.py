"""The service's own OAuth 2.0 token endpoint, as Microsoft's identity platform offers it, so
that stock azure-identity (`ClientSecretCredential` with `authority=` this service) gets its
bearer tokens for the Resource Manager API here.

Two paths, which need no client certificate: the tenant's OpenID configuration, which names
the token endpoint, and the token endpoint itself (client credentials only). A client
authenticates with a service principal's client id and secret, or with a registered
management certificate presented over TLS. The tenant in the path is any word of Azure's
tenant characters: a principal's token carries its own subscription whatever the tenant.
"""

from __future__ import annotations

import re

from flask import Blueprint, request
from werkzeug.wrappers import Response

from scheduler.api.arm.paths import OPENID_CONFIGURATION, TOKEN
from scheduler.api.auth import peer_certificate
from scheduler.api.responses import json_response
from scheduler.api.runtime import runtime, transaction
from scheduler.errors import oauth_error_response
from scheduler.security import pki
from scheduler.services.principals import (
    IssuedToken,
    issue_token_for_certificate,
    issue_token_for_secret,
)

bp = Blueprint("oauth", __name__)

TENANT = re.compile(r"[A-Za-z0-9._-]{1,100}")
GRANT_TYPE = "client_credentials"
# Any scope is accepted; this is the one azure-mgmt clients ask for.
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def issuer_url(tenant: str) -> str:
    """The tenant's authority as the client reached it: https, the request's host and port.

    The request's `Host`, not `server.public_url`: MSAL calls the endpoints it is given, and
    the client was given this authority; the service is only ever served over TLS.
    """
    return f"https://{request.host}/{tenant}"


def tenant_refused(tenant: str) -> Response | None:
    """The OAuth error for a tenant that is not a word of Azure's tenant characters."""
    if TENANT.fullmatch(tenant):
        return None
    return oauth_error_response("invalid_request", "The tenant in the path is not a tenant "
                                "id or name (1 to 100 letters, digits, '.', '_' or '-').", 400)


@bp.get(OPENID_CONFIGURATION)
def openid_configuration(tenant: str) -> Response:
    """The tenant's OpenID configuration: where to ask for tokens, and how."""
    refused = tenant_refused(tenant)
    if refused is not None:
        return refused
    authority = issuer_url(tenant)
    return json_response({
        "issuer": f"{authority}/v2.0",
        "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
        "token_endpoint": f"{authority}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "tls_client_auth"],
        "grant_types_supported": [GRANT_TYPE],
        "response_types_supported": ["token"],
        "response_modes_supported": ["form_post"],
        "scopes_supported": [MANAGEMENT_SCOPE],
        "subject_types_supported": ["pairwise"],
        "claims_supported": [],
        "tenant_region_scope": None,
    })


@bp.post(TOKEN)
def token(tenant: str) -> Response:
    """A bearer token for client credentials: a service principal's id and secret, or else a
    registered management certificate presented over TLS."""
    refused = tenant_refused(tenant)
    if refused is not None:
        return refused
    form = request.form
    if any("\x00" in key or "\x00" in value for key, value in form.items(multi=True)):
        return oauth_error_response("invalid_request", "A parameter holds a NUL character.",
                                    400)
    grant_type = form.get("grant_type", "")
    if not grant_type:
        return oauth_error_response("invalid_request", "The request names no grant_type.",
                                    400)
    if grant_type != GRANT_TYPE:
        return oauth_error_response("unsupported_grant_type", f"The grant type {grant_type!r} "
                                    f"is not supported; use {GRANT_TYPE}.", 400)
    client_id = form.get("client_id", "")
    if not client_id:
        return oauth_error_response("invalid_request", "The request names no client_id.", 400)
    secret = form.get("client_secret")
    issued = by_secret(client_id, secret) if secret is not None else by_certificate()
    if issued is None:
        return oauth_error_response("invalid_client", unauthenticated(secret is not None), 401)
    return json_response({"token_type": "Bearer", "access_token": issued.text,
                          "expires_in": issued.expires_in, "ext_expires_in": issued.expires_in},
                         headers=NO_STORE)


def unauthenticated(with_secret: bool) -> str:
    """Why the client was not authenticated, in the error's description."""
    if with_secret:
        return "The client id is unknown or the client secret is wrong."
    return ("The request has no client_secret, and presents no client certificate registered "
            "to a subscription and valid now.")


def by_secret(client_id: str, secret: str) -> IssuedToken | None:
    """A token for a service principal's id and secret; None if they are not right."""
    now = runtime().clock.now()
    with transaction() as session:
        return issue_token_for_secret(session, client_id, secret, now)


def by_certificate() -> IssuedToken | None:
    """A token for the management certificate the request presents; None without one that is
    registered and valid now."""
    rt = runtime()
    server = rt.settings.server
    der = peer_certificate(request.environ, server.trusted_proxies, server.client_cert_header)
    now = rt.clock.now()
    validity = pki.validity_of_der(der) if der is not None else None
    if der is None or validity is None or not validity[0] <= now < validity[1]:
        return None
    with transaction() as session:
        return issue_token_for_certificate(session, pki.thumbprint_of_der(der), now)
