"""Reading a Resource Manager request: its api-version, its paging and the links it is
answered with."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request

from scheduler.api.requests import count_parameter
from scheduler.api.runtime import runtime
from scheduler.errors import InvalidApiVersion, MissingApiVersion

# The version azure-mgmt-scheduler speaks first; the two before it have the same shapes,
# answer collection deletes, enables and disables when they are done, and call the
# P10Premium plan Premium.
CURRENT_VERSION = "2016-03-01"
API_VERSIONS = (CURRENT_VERSION, "2016-01-01", "2014-08-01-preview")
PAGE_SIZE = 100
# Any count a query parameter can spell (ten digits).
ANY_COUNT = 10**10 - 1


def api_version() -> str:
    """The request's api-version; 400 when it names none, or one not spoken here."""
    version = request.args.get("api-version")
    if version is None:
        raise MissingApiVersion("The api-version query parameter (?api-version=) is required "
                                "for all requests.")
    if version not in API_VERSIONS:
        raise InvalidApiVersion(f"The api-version {version!r} is not supported. The supported "
                                f"versions are {', '.join(API_VERSIONS)}.")
    return version


def is_current_version() -> bool:
    """Whether the request speaks 2016-03-01, whose long operations answer 202 at once."""
    return api_version() == CURRENT_VERSION


def page_bounds() -> tuple[int, int]:
    """How many to answer (`$top`, at most 100: more is taken as 100) and after how many
    (`$skip`)."""
    top = count_parameter("$top", ANY_COUNT, minimum=1)
    skip = count_parameter("$skip", ANY_COUNT, minimum=0)
    return min(top or PAGE_SIZE, PAGE_SIZE), skip or 0


def base_url() -> str:
    """The service's public URL, which links are made under (never the request's `Host`,
    which the client chose)."""
    return runtime().public_url


def next_link(top: int, skip: int, more: bool) -> str | None:
    """The link to the page after this one, carrying the api-version, `$top`, `$skip` and
    `$filter` itself (the client adds nothing to it); None on the last page."""
    if not more:
        return None
    query = {"api-version": api_version(), "$top": str(top), "$skip": str(skip + top)}
    if "$filter" in request.args:
        query["$filter"] = request.args["$filter"]
    return f"{base_url()}{request.path}?{urlencode(query)}"
