"""`ApiClient`: the service's HTTPS API, called with one subscription's client certificate."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote
from xml.etree.ElementTree import ParseError

import httpx
from defusedxml import DefusedXmlException

from scheduler.client import asm
from scheduler.client.errors import ClientError, InputError
from scheduler.client.names import is_name

API_VERSION = "2014-04-01"
# ASM clients send this with every call; the service accepts it and Azure's front end wanted it.
MANAGEMENT_VERSION = "2012-03-01"
PAGE = 1000  # the most `$top` the service takes
# Pauses between polls of an asynchronous operation: short at first, as most finish at once.
POLL_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8) + (1.0,) * 300
# A `waiting` execution (behind an open run of its job, by its concurrencyPolicy) is open:
# waiting for it goes on until it has run; a `skipped` one never will.
FINISHED_EXECUTIONS = ("completed", "failed", "canceled", "missed", "skipped")
# A paused execution (a sequence's failed or manual step) waits for someone to resume it, so
# waiting for it ends there too.
PAUSED = "paused"
# Segments that URL libraries resolve away (`jobs/.` is `jobs`, `jobs/..` the collection).
DOT_SEGMENTS = ("", ".", "..")

T = TypeVar("T")


def tls_context(cert: Path, ca: Path | None) -> ssl.SSLContext:
    """A context that presents `cert` (certificate and key, one PEM) and trusts only `ca`.

    Built here rather than left to httpx so that REQUESTS_CA_BUNDLE, SSL_CERT_FILE and the
    like never decide whom the client trusts; without `ca` the system's store is used.
    """
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"CA file {ca}: cannot be read as PEM certificates: {exc}") from None
    try:
        context.load_cert_chain(str(cert))
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"client certificate {cert}: cannot be read as one PEM holding a "
                         f"certificate and its key: {exc}") from None
    return context


def _segment(value: str) -> str:
    """One segment of a URL path, percent-encoded whole (`/`, `%`, `?` and `#` included); a
    segment that would be resolved away, reaching another resource, is refused."""
    if value in DOT_SEGMENTS:
        raise InputError(f"{value!r} cannot be a segment of a URL path; nothing was sent")
    return quote(value, safe="")


def refuse_rewritten(request: httpx.Request, base_url: httpx.URL, path: str) -> None:
    """Refuse a request whose path is not `path` under `base_url` as written: httpx resolves
    dot segments, and such a request would reach another resource than the one named."""
    expected = base_url.raw_path + path.lstrip("/").encode("ascii", "replace")
    sent = request.url.raw_path.partition(b"?")[0]
    if sent != expected:
        raise InputError(f"{request.method} {path} would be sent to "
                         f"{sent.decode('ascii', 'replace')}, another resource; "
                         "nothing was sent")


def error_of(response: httpx.Response) -> ClientError:
    """The service's error answer (JSON or ASM XML) as a ClientError."""
    status, body = response.status_code, response.text
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        error = document["error"]
        return ClientError(str(error.get("message") or body), status, error.get("code"))
    found = asm.error_of(body) if body.lstrip().startswith("<") else None
    if found is not None:
        return ClientError(found[1] or body, status, found[0] or None)
    first_line = body.strip().splitlines()[0] if body.strip() else response.reason_phrase
    return ClientError(first_line[:500], status, None)


def unreachable(service: str, exc: Exception) -> str:
    """Why a call got no answer, with what to check when it was the TLS handshake."""
    reason = str(exc) or type(exc).__name__
    message = f"cannot reach {service.rstrip('/')}: {reason}"
    if "SSL" in reason or "TLS" in reason:
        message += ("; the TLS handshake failed: --ca must name the CA that signed the "
                    "server's certificate, and --cert a certificate the service trusts")
    return message


class ApiClient:
    """One subscription's resources on a scheduler service, over HTTPS."""

    def __init__(self, http: httpx.Client, pause: Callable[[float], None] = time.sleep) -> None:
        self._http = http
        self._pause = pause
        self._date: str | None = None  # the Date header of the service's last answer

    @classmethod
    def connect(cls, url: str, subscription: str, cert: Path, ca: Path | None,
                timeout: float = 30.0) -> ApiClient:
        """A client of the service at `url`, as the holder of `cert`."""
        try:
            base_url = httpx.URL(f"{url.rstrip('/')}/{_segment(subscription)}")
        except httpx.InvalidURL as exc:
            raise InputError(f"the service URL {url!r} cannot be used: {exc}") from None
        http = httpx.Client(base_url=base_url, verify=tls_context(cert, ca), trust_env=False,
                            timeout=timeout, headers={"x-ms-version": MANAGEMENT_VERSION})
        return cls(http)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # --- plumbing ------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, body: str | bytes | None = None,
              content_type: str | None = None, params: dict[str, str] | None = None,
              headers: dict[str, str] | None = None) -> httpx.Response:
        """One request; an error answer or a failed connection raises ClientError."""
        sent = dict(headers or {})
        if content_type:
            sent["Content-Type"] = content_type
        request = self._http.build_request(method, path, content=body, params=params,
                                           headers=sent)
        refuse_rewritten(request, self._http.base_url, path)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise ClientError(unreachable(str(self._http.base_url.join("/")), exc)) from None
        self._date = response.headers.get("Date", self._date)
        if response.status_code >= 400:
            raise error_of(response)
        return response

    def _json(self, method: str, path: str, document: Any = None,
              headers: dict[str, str] | None = None,
              params: dict[str, str] | None = None) -> Any:
        """A call to a JSON route, and its answer parsed (None when it has no body)."""
        body = None if document is None else json.dumps(document)
        response = self._call(method, path, body=body,
                              content_type="application/json" if body is not None else None,
                              params={"api-version": API_VERSION, **(params or {})},
                              headers=headers)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(f"the service answered {method} {path} with something that "
                              "is not JSON", response.status_code) from None

    def _xml(self, path: str) -> str:
        return self._call("GET", path).text

    def service_time(self) -> datetime | None:
        """The service's time at its last answer (its Date header, to the second), if it
        said: what is late is late by the service's clock, not by this machine's."""
        if not self._date:
            return None
        try:
            return parsedate_to_datetime(self._date)
        except (TypeError, ValueError):
            return None

    def _wait(self, response: httpx.Response) -> None:
        """Poll the operation a 202 started until it has finished; its failure raises."""
        request_id = response.headers.get("x-ms-request-id")
        if response.status_code != 202 or not request_id:
            return
        if not is_name(request_id):
            raise ClientError(f"the service started an operation whose id {request_id!r} "
                              "cannot be polled")
        for pause in POLL_PAUSES:
            operation = self._read_operation(request_id)
            if operation["status"].lower() == "succeeded":
                return
            if operation["status"].lower() == "failed":
                raise ClientError(operation["message"] or f"operation {request_id} failed",
                                  operation["httpStatusCode"], operation["code"])
            self._pause(pause)
        raise ClientError(f"operation {request_id} is still in progress after "
                          f"{sum(POLL_PAUSES):.0f} s; poll GET /operations/{request_id}")

    def _read_operation(self, request_id: str) -> dict[str, Any]:
        return _read_xml(asm.operation_of, self._xml(f"/operations/{_segment(request_id)}"))

    # --- cloud services and job collections ---------------------------------------------

    def cloud_service_exists(self, cloud_service: str) -> bool:
        """Whether the subscription has this cloud service."""
        try:
            self._call("GET", f"/cloudservices/{_segment(cloud_service)}")
        except ClientError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create_cloud_service(self, cloud_service: str, region: str) -> None:
        """Create a cloud service and wait until it is made."""
        response = self._call("PUT", f"/cloudservices/{_segment(cloud_service)}",
                              body=asm.cloud_service_xml(cloud_service, region),
                              content_type="application/xml")
        self._wait(response)

    def list_collections(self, cloud_service: str | None = None) -> list[dict[str, Any]]:
        """The job collections of one cloud service, or of all of them."""
        path = "/cloudservices" + (f"/{_segment(cloud_service)}" if cloud_service else "")
        return _read_xml(asm.collections_of, self._xml(path))

    def get_collection(self, cloud_service: str, collection: str) -> dict[str, Any]:
        """One job collection."""
        text = self._xml(f"{_collections(cloud_service)}/{_segment(collection)}")
        return _read_xml(lambda doc: asm.collection_document(doc, cloud_service), text)

    def collection_name_available(self, cloud_service: str, collection: str) -> tuple[bool, str]:
        """Whether the name is free in the cloud service, and the service's reason if not."""
        text = self._call("GET", _collections(cloud_service),
                          params={"op": "checknameavailability",
                                  "resourceName": collection}).text
        root = _read_xml(asm.parse, text)
        return (asm.text(root, "IsAvailable") or "").lower() == "true", \
            asm.text(root, "Reason") or ""

    def create_collection(self, cloud_service: str, collection: str, plan: str) -> None:
        """Create (or update) a job collection and wait until it is made."""
        response = self._call("PUT", f"{_collections(cloud_service)}/{_segment(collection)}",
                              body=asm.collection_xml(plan), content_type="application/xml")
        self._wait(response)

    def set_collection_state(self, cloud_service: str, collection: str, state: str) -> None:
        """Put a job collection in `state` (`Started` or `Suspended`), the rest of it as it
        is, and wait until that is done."""
        path = f"{_collections(cloud_service)}/{_segment(collection)}"
        current = self._xml(path)
        body = _read_xml(lambda doc: asm.collection_in_state(doc, state), current)
        self._wait(self._call("PUT", path, body=body, content_type="application/xml"))

    def delete_collection(self, cloud_service: str, collection: str) -> None:
        """Delete a job collection with its jobs, and wait until it is gone."""
        response = self._call("DELETE",
                              f"{_collections(cloud_service)}/{_segment(collection)}")
        self._wait(response)

    # --- jobs ----------------------------------------------------------------------------

    def list_jobs(self, cloud_service: str, collection: str, state: str | None = None,
                  top: int | None = None) -> list[Any]:
        """The collection's jobs, page after page (or the first `top`)."""
        return list(self._pages(_jobs(cloud_service, collection), "state", state, top))

    def get_job(self, cloud_service: str, collection: str, job_id: str) -> Any:
        """One job."""
        return self._json("GET", _job(cloud_service, collection, job_id))

    def create_job(self, cloud_service: str, collection: str, job_id: str,
                   document: Any) -> Any:
        """Create a job with this id; an existing one is left alone and named (412)."""
        return self._json("PUT", _job(cloud_service, collection, job_id), document,
                          headers={"If-None-Match": "*"})

    def put_job(self, cloud_service: str, collection: str, job_id: str, document: Any) -> Any:
        """Create a job, or replace the one with this id whole."""
        return self._json("PUT", _job(cloud_service, collection, job_id), document)

    def patch_job(self, cloud_service: str, collection: str, job_id: str,
                  patch: dict[str, Any]) -> Any:
        """Merge fields into a job."""
        return self._json("PATCH", _job(cloud_service, collection, job_id), patch)

    def delete_job(self, cloud_service: str, collection: str, job_id: str) -> None:
        """Delete a job and its history."""
        self._json("DELETE", _job(cloud_service, collection, job_id))

    def run_job(self, cloud_service: str, collection: str, job_id: str,
                parameters: dict[str, Any] | None = None, overlap: str | None = None) -> Any:
        """Start an execution of the job now, outside its schedule; under the overlap
        policy given in place of the job's `concurrencyPolicy`, if any."""
        body: dict[str, Any] = {}
        if parameters:
            body["parameters"] = parameters
        if overlap:
            body["overlap"] = overlap
        return self._json("POST", f"{_job(cloud_service, collection, job_id)}/run",
                          body or None)

    def backfill_job(self, cloud_service: str, collection: str, job_id: str, start: str,
                     end: str, only_missed: bool = False, overlap: str | None = None) -> Any:
        """Run the job's occurrences from `start` to `end` (past times, both included) now:
        `{"executions": [...], "leftOut": {"ranAlready": n, "excluded": n}}`."""
        body: dict[str, Any] = {"start": start, "end": end, "onlyMissed": only_missed}
        if overlap:
            body["overlap"] = overlap
        return self._json("POST", f"{_job(cloud_service, collection, job_id)}/backfill",
                          body)

    def get_execution(self, cloud_service: str, collection: str, job_id: str | None,
                      execution_id: str) -> Any:
        """One execution of the collection (of the job, if one is named)."""
        return self._json("GET", _execution(cloud_service, collection, job_id, execution_id))

    def list_executions(self, cloud_service: str, collection: str, job_id: str | None = None,
                        status: str | None = None, top: int | None = None) -> list[Any]:
        """The executions of the collection (its jobs' and inline runs) or of one job,
        newest first."""
        return list(self._pages(_executions(cloud_service, collection, job_id), "status",
                                status, top))

    def execution_pages(self, cloud_service: str, collection: str,
                        status: str) -> Iterator[list[Any]]:
        """The collection's executions with this status, newest first, a page at a time,
        for a reader that may stop early."""
        return self._page_lists(_executions(cloud_service, collection, None), "status",
                                status, None)

    def cancel_execution(self, cloud_service: str, collection: str, job_id: str | None,
                         execution_id: str) -> None:
        """Cancel an open execution; one that has finished is refused (409)."""
        self._json("PATCH", _execution(cloud_service, collection, job_id, execution_id),
                   {"status": "canceled"})

    def resume_execution(self, cloud_service: str, collection: str, job_id: str | None,
                         execution_id: str) -> Any:
        """Resume a paused execution: its failed step is tried again, or its manual step
        runs; the execution as it is now."""
        path = f"{_execution(cloud_service, collection, job_id, execution_id)}/resume"
        return self._json("POST", path)

    def run_inline(self, cloud_service: str, collection: str, document: Any) -> Any:
        """Run a definition (`{"action", "parameters"}`) once, without storing a job."""
        return self._json("POST", _executions(cloud_service, collection, None), document)

    def wait_for_execution(self, cloud_service: str, collection: str, job_id: str | None,
                           execution: Any) -> Any:
        """Poll an execution until it has finished or paused (or the polls are used up);
        its last state."""
        execution_id = str(execution.get("id"))
        if not is_name(execution_id):
            raise ClientError(f"the service answered an execution id {execution_id!r} that "
                              "cannot be polled")
        for pause in POLL_PAUSES:
            if str(execution.get("status", "")).lower() in (*FINISHED_EXECUTIONS, PAUSED):
                return execution
            self._pause(pause)
            execution = self.get_execution(cloud_service, collection, job_id, execution_id)
        return execution

    def job_history(self, cloud_service: str, collection: str, job_id: str,
                    status: str | None = None, top: int | None = None) -> list[Any]:
        """A job's history, newest first."""
        path = f"{_job(cloud_service, collection, job_id)}/history"
        return list(self._pages(path, "status", status, top))

    def job_occurrences(self, cloud_service: str, collection: str, job_id: str,
                        top: int) -> list[Any]:
        """The job's next `top` fire times, as the service computes them."""
        path = f"{_job(cloud_service, collection, job_id)}/occurrences"
        found = self._json("GET", path, params={"$top": str(top)})
        return list(found or [])

    # --- exclusion calendars ---------------------------------------------------------------

    def list_calendars(self, cloud_service: str, collection: str) -> list[Any]:
        """The collection's exclusion calendars, by name."""
        found = self._json("GET", _calendars(cloud_service, collection)) or {}
        return list(found.get("value") or [])

    def get_calendar(self, cloud_service: str, collection: str, name: str) -> Any:
        """One exclusion calendar."""
        return self._json("GET", _calendar(cloud_service, collection, name))

    def put_calendar(self, cloud_service: str, collection: str, name: str,
                     document: Any) -> Any:
        """Create an exclusion calendar, or replace the one of this name whole."""
        return self._json("PUT", _calendar(cloud_service, collection, name), document)

    def delete_calendar(self, cloud_service: str, collection: str, name: str) -> None:
        """Delete an exclusion calendar."""
        self._json("DELETE", _calendar(cloud_service, collection, name))

    # --- notification channels -----------------------------------------------------------

    def list_channels(self, cloud_service: str, collection: str) -> list[Any]:
        """The collection's notification channels, by name."""
        found = self._json("GET", _channels(cloud_service, collection)) or {}
        return list(found.get("value") or [])

    def get_channel(self, cloud_service: str, collection: str, name: str) -> Any:
        """One notification channel."""
        return self._json("GET", _channel(cloud_service, collection, name))

    def put_channel(self, cloud_service: str, collection: str, name: str,
                    document: Any) -> Any:
        """Create a notification channel, or replace the one of this name whole."""
        return self._json("PUT", _channel(cloud_service, collection, name), document)

    def delete_channel(self, cloud_service: str, collection: str, name: str) -> None:
        """Delete a notification channel."""
        self._json("DELETE", _channel(cloud_service, collection, name))

    def test_channel(self, cloud_service: str, collection: str, name: str) -> Any:
        """Send a notification channel its test message: whether it was delivered."""
        return self._json("POST", f"{_channel(cloud_service, collection, name)}/test")

    # --- alerts --------------------------------------------------------------------------

    def list_alerts(self, cloud_service: str, collection: str, job_id: str | None = None,
                    top: int | None = None) -> list[Any]:
        """The alerts of the collection's jobs (of one job), newest first."""
        path = (f"{_job(cloud_service, collection, job_id)}/alerts" if job_id is not None
                else f"{_collection(cloud_service, collection)}/alerts")
        if top is not None:
            path += f"?$top={top}"
        found = self._json("GET", path) or {}
        return list(found.get("value") or [])

    def get_default_alerts(self, cloud_service: str, collection: str) -> Any:
        """The collection's default alert rules."""
        return self._json("GET", _default_alerts(cloud_service, collection))

    def put_default_alerts(self, cloud_service: str, collection: str, rules: Any) -> Any:
        """Set the collection's default alert rules."""
        return self._json("PUT", _default_alerts(cloud_service, collection), rules)

    def delete_default_alerts(self, cloud_service: str, collection: str) -> None:
        """Take the collection's default alert rules away."""
        self._json("DELETE", _default_alerts(cloud_service, collection))

    # --- management certificates ---------------------------------------------------------

    def list_certificates(self) -> list[dict[str, Any]]:
        """The subscription's management certificates, oldest first."""
        return _read_xml(asm.certificates_of, self._xml("/certificates"))

    def get_certificate(self, thumbprint: str) -> dict[str, Any]:
        """One management certificate, by thumbprint."""
        return _read_xml(asm.certificate_document,
                         self._xml(f"/certificates/{_segment(thumbprint)}"))

    def add_certificate(self, der: bytes, thumbprint: str, public_key_der: bytes) -> None:
        """Register a certificate (its DER) to the subscription; it works at once."""
        self._call("POST", "/certificates",
                   body=asm.certificate_xml(der, thumbprint, public_key_der),
                   content_type="application/xml")

    def delete_certificate(self, thumbprint: str) -> None:
        """Unregister a certificate: calls made with it fail from now on."""
        self._call("DELETE", f"/certificates/{_segment(thumbprint)}")

    # --- listings --------------------------------------------------------------------------

    def _pages(self, path: str, field: str, value: str | None,
               top: int | None) -> Iterator[Any]:
        """A listing's items, fetched a page at a time until `top` or the end."""
        for page in self._page_lists(path, field, value, top):
            yield from page

    def _page_lists(self, path: str, field: str, value: str | None,
                    top: int | None) -> Iterator[list[Any]]:
        """A listing's pages, each fetched when it is asked for, until `top` or the end."""
        params = {"$filter": f"{field} eq '{value}'"} if value else {}
        skip = 0
        while top is None or skip < top:
            size = PAGE if top is None else min(PAGE, top - skip)
            page = self._json("GET", path, params={**params, "$top": str(size),
                                                   "$skip": str(skip)}) or []
            yield list(page)
            if len(page) < size:
                return
            skip += size


def _collections(cloud_service: str) -> str:
    return f"/cloudservices/{_segment(cloud_service)}/resources/scheduler/JobCollections"


def _collection(cloud_service: str, collection: str) -> str:
    return (f"/cloudservices/{_segment(cloud_service)}/resources/scheduler/~/JobCollections/"
            f"{_segment(collection)}")


def _jobs(cloud_service: str, collection: str) -> str:
    return f"{_collection(cloud_service, collection)}/jobs"


def _job(cloud_service: str, collection: str, job_id: str) -> str:
    return f"{_jobs(cloud_service, collection)}/{_segment(job_id)}"


def _calendars(cloud_service: str, collection: str) -> str:
    return f"{_collection(cloud_service, collection)}/calendars"


def _calendar(cloud_service: str, collection: str, name: str) -> str:
    return f"{_calendars(cloud_service, collection)}/{_segment(name)}"


def _channels(cloud_service: str, collection: str) -> str:
    return f"{_collection(cloud_service, collection)}/notificationChannels"


def _channel(cloud_service: str, collection: str, name: str) -> str:
    return f"{_channels(cloud_service, collection)}/{_segment(name)}"


def _default_alerts(cloud_service: str, collection: str) -> str:
    return f"{_collection(cloud_service, collection)}/defaultAlerts"


def _executions(cloud_service: str, collection: str, job_id: str | None) -> str:
    """The executions of a job, or of the whole collection (its jobs' and inline runs)."""
    owner = (_job(cloud_service, collection, job_id) if job_id is not None
             else _collection(cloud_service, collection))
    return f"{owner}/executions"


def _execution(cloud_service: str, collection: str, job_id: str | None,
               execution_id: str) -> str:
    return f"{_executions(cloud_service, collection, job_id)}/{_segment(execution_id)}"


def _read_xml(reader: Callable[[str], T], document: str) -> T:
    """Read an XML answer; one that is not what the API sends is a clear error."""
    try:
        return reader(document)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise ClientError(f"the service's answer is not the XML expected: {exc}") from None
