"""What every request leaves behind: one access-log line and its Prometheus metrics."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from scheduler.api.auth import refusal
from scheduler.api.runtime import request_id, runtime

log = logging.getLogger("scheduler.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)
# The route of a request no route matched: paths are not labels, or a scan of random paths
# would make a time series per path.
UNMATCHED = "unmatched"
# The methods counted by name; any other is counted as OTHER, or a client (one without a
# certificate too) could make a time series per method it makes up.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


class RequestMetrics:
    """The metrics of one API process: requests by route and status, and their latency.

    In a served worker (prometheus-client's multiprocess mode) they are written to the
    directory every process of the server shares and `registry` is None; otherwise they live
    in `registry`, a private one, so that any number of apps run in one process.
    """

    def __init__(self, shared: bool = False) -> None:
        self.registry = None if shared else CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "scheduler_api_requests", "Requests answered, by method, route and status",
            ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "scheduler_api_request_seconds",
            "From a request reaching the app to its answer, by method and route",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.auth_failures = Counter(
            "scheduler_api_auth_failures",
            "Client certificates refused, by reason: by authentication (each answered with "
            "the same 403) or, as untrusted, in the TLS handshake",
            ["reason"], registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def count_auth_failure(self, reason: str) -> None:
        """Count one client certificate refused, and why."""
        self.auth_failures.labels(reason).inc()


def method_label(method: str) -> str:
    """A request's method as a metric label: one of a fixed few."""
    return method if method in KNOWN_METHODS else OTHER


def init_app(app: Flask, metrics: RequestMetrics) -> None:
    """Time every request from before anything else looks at it, and account for it once it
    has its answer (an error document included)."""
    app.before_request(_start_timing)

    @app.after_request
    def _account(response: Response) -> Response:
        account_for(response, metrics)
        return response


def _start_timing() -> None:
    g.began = runtime().clock.monotonic()


def account_for(response: Response, metrics: RequestMetrics) -> None:
    """Observe the request in the metrics and write its access-log line."""
    began = g.get("began")
    seconds = runtime().clock.monotonic() - began if began is not None else 0.0
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    metrics.observe(method_label(request.method), route, response.status_code, seconds)
    refused = refusal()
    if refused is not None:
        metrics.count_auth_failure(refused)
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s %d", request.method, request.path, response.status_code, extra={
            "request_id": request_id(), "subscription": g.get("subscription_id") or "-",
            "auth": refused or ("ok" if g.get("subscription_id") else "-"),
            "route": route, "status": response.status_code,
            "duration_ms": round(seconds * 1000, 3), "client": request.remote_addr or "-"})
