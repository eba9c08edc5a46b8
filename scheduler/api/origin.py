"""The service's own origin: the base of every link it writes, and the only `Origin` it answers.

A person may import a management certificate into a browser, which then presents it to this
service for any page that asks. So nothing a page on another site can make a browser send is
acted on: a request naming another `Origin` is refused, and so is a state-changing request
whose body is of a type a browser sends across sites without a CORS preflight. The service
grants no CORS access to anyone.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

from scheduler.api.arm.paths import is_token_path
from scheduler.api.dashboard_paths import is_dashboard_path
from scheduler.api.responses import wants_json
from scheduler.api.runtime import runtime
from scheduler.errors import ForeignOrigin, UnsupportedMediaType
from scheduler.services.public_url import DEFAULT_PORTS, certificate_host, public_url

__all__ = ["absolute_url", "certificate_host", "origin_of", "public_url",
           "refuse_cross_site_request"]

STATE_CHANGING_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})
# The content types of "simple" requests: a browser sends them to any site without asking.
CROSS_SITE_CONTENT_TYPES = frozenset({
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


def origin_of(url: str) -> str | None:
    """The origin of a URL as a browser writes it: `scheme://host[:port]`, in lower case,
    without the scheme's default port; None when it has none (`null`, say)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else \
        f"{scheme}://{host}:{port}"


def absolute_url(path: str) -> str:
    """A link to one of the service's paths, under its public URL (never the request's
    `Host`, which the client chose)."""
    return runtime().public_url + path


def refuse_cross_site_request() -> None:
    """Refuse what a page on another site could have made a browser send: any request from
    another origin (403), and a state-changing one with a body of a type browsers send across
    sites without asking (415)."""
    origin = request.headers.get("Origin")
    if origin is not None:
        own = runtime().public_url
        if origin_of(origin) != origin_of(own):
            raise ForeignOrigin(
                f"The request comes from a page of another origin ({origin}) than this "
                f"service's own ({own}); requests from other origins are refused.")
    content_type = request.mimetype
    # OAuth's token endpoint takes a form, as OAuth says; it changes nothing, and what it
    # answers a page of another site cannot read.
    # The dashboard's forms are forms: each carries its session's CSRF token, and the
    # session's cookie is SameSite=Strict.
    if request.method in STATE_CHANGING_METHODS and content_type in CROSS_SITE_CONTENT_TYPES \
            and not is_token_path(request.path) and not is_dashboard_path(request.path):
        expected = "application/json" if wants_json(request.path) else "application/xml"
        raise UnsupportedMediaType(
            f"The content type {content_type} is refused on {request.method}: a page on "
            f"another site can make a browser send it without asking. Send the body as "
            f"{expected}.")
