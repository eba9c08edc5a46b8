"""ASM's request rules, applied before Flask routes: method overrides and the case of paths."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

_OVERRIDABLE = {"MERGE": "PATCH", "PATCH": "PATCH", "PUT": "PUT", "DELETE": "DELETE"}
_FIXED = {"cloudservices", "operations", "certificates"}
_JOB_CHILDREN = {"history", "occurrences", "executions", "run", "alerts"}


def canonical_path(path: str) -> str:
    """Lower-case the subscription id and the fixed words of an ASM path, leaving names as
    the client wrote them."""
    parts = path.split("/")
    if len(parts) > 1:  # the subscription id, a GUID: its case carries nothing
        parts[1] = parts[1].lower()
    if len(parts) > 2 and parts[2].lower() in _FIXED:
        parts[2] = parts[2].lower()
    if len(parts) > 2 and parts[2] == "cloudservices":
        for index, word in ((4, "resources"), (5, "scheduler")):
            if len(parts) > index and parts[index].lower() == word:
                parts[index] = word
        position = 7 if len(parts) > 6 and parts[6] == "~" else 6
        expected = [(position, {"jobcollections"}),
                    (position + 2, {"jobs", "executions", "notificationchannels", "alerts",
                                    "defaultalerts"}),
                    (position + 4, _JOB_CHILDREN | {"resume", "test"}),
                    (position + 6, {"resume"})]
        for index, words in expected:
            if len(parts) > index and parts[index].lower() in words:
                parts[index] = parts[index].lower()
    return "/".join(parts)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AzureRequestAdapter:
    """Applies ASM's request rules before Flask routes: method overrides and path case."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        """Rewrite the method and path, then call the app."""
        method = environ.get("REQUEST_METHOD", "GET").upper()
        override = environ.get("HTTP_X_HTTP_METHOD", "").upper()
        if method == "POST" and override in _OVERRIDABLE:
            method = _OVERRIDABLE[override]
        environ["REQUEST_METHOD"] = _OVERRIDABLE.get(method, method)
        environ["PATH_INFO"] = canonical_path(environ.get("PATH_INFO", "/"))
        return self.app(environ, start_response)
