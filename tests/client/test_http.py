"""ApiClient against a stand-in transport: errors, asynchronous operations, pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from scheduler.client import asm
from scheduler.client.errors import ClientError, InputError
from scheduler.client.http import ApiClient, refuse_rewritten, tls_context
from scheduler.client.runner import read_document

NS = 'xmlns="http://schemas.microsoft.com/windowsazure"'
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, pauses: list[float] | None = None) -> ApiClient:
    """An ApiClient whose calls `handler` answers, recording its pauses instead of sleeping."""
    http = httpx.Client(base_url="https://service.test/sub1",
                        transport=httpx.MockTransport(handler))
    return ApiClient(http, pause=(pauses if pauses is not None else []).append)


def test_a_json_error_carries_status_code_and_message() -> None:
    api = client(lambda _: httpx.Response(404, json={"error": {
        "code": "ResourceNotFound", "message": "The job x does not exist."}}))
    with pytest.raises(ClientError) as caught:
        api.get_job("cs", "jc", "x")
    assert (caught.value.status, caught.value.code) == (404, "ResourceNotFound")
    assert str(caught.value) == "The job x does not exist. (HTTP 404, ResourceNotFound)"


def test_an_xml_error_carries_status_code_and_message() -> None:
    body = f"<Error {NS}><Code>ForbiddenError</Code><Message>Go away.</Message></Error>"
    api = client(lambda _: httpx.Response(403, text=body))
    with pytest.raises(ClientError, match=r"Go away\. \(HTTP 403, ForbiddenError\)"):
        api.list_collections()


def test_a_failed_connection_says_where_it_went() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
    with pytest.raises(ClientError, match=r"cannot reach https://service\.test: .*refused") as c:
        client(refuse).list_jobs("cs", "jc")
    assert c.value.status is None


def operation(status: str, extra: str = "") -> str:
    """An `<Operation>` document."""
    return f"<Operation {NS}><ID>x</ID><Status>{status}</Status>{extra}</Operation>"


def test_an_asynchronous_call_is_polled_until_it_succeeds() -> None:
    answers = iter([operation("InProgress"), operation("InProgress"),
                    operation("Succeeded", "<HttpStatusCode>200</HttpStatusCode>")])
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "PUT":
            return httpx.Response(202, headers={"x-ms-request-id": "op1"})
        return httpx.Response(200, text=next(answers))
    pauses: list[float] = []
    client(handle, pauses).create_collection("cs", "jc", "Standard")
    assert seen == ["PUT /sub1/cloudservices/cs/resources/scheduler/JobCollections/jc",
                    *["GET /sub1/operations/op1"] * 3]
    assert len(pauses) == 2


def test_a_failed_operation_raises_its_error() -> None:
    failed = operation("Failed", "<HttpStatusCode>409</HttpStatusCode><Error>"
                       "<Code>ConflictError</Code><Message>Too many.</Message></Error>")

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(202, headers={"x-ms-request-id": "op1"})
        return httpx.Response(200, text=failed)
    with pytest.raises(ClientError, match=r"Too many\. \(HTTP 409, ConflictError\)"):
        client(handle).delete_collection("cs", "jc")


def test_a_listing_is_read_page_after_page() -> None:
    asked: list[tuple[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        top, skip = int(request.url.params["$top"]), int(request.url.params["$skip"])
        asked.append((request.url.params["$top"], request.url.params["$skip"]))
        assert request.url.params["$filter"] == "state eq 'enabled'"
        total = 2500
        return httpx.Response(200, json=[{"id": str(n)}
                                         for n in range(skip, min(skip + top, total))])
    jobs = client(handle).list_jobs("cs", "jc", state="enabled")
    assert len(jobs) == 2500
    assert asked == [("1000", "0"), ("1000", "1000"), ("1000", "2000")]
    asked.clear()
    assert len(client(handle).list_jobs("cs", "jc", state="enabled", top=1200)) == 1200
    assert asked == [("1000", "0"), ("200", "1000")]


def test_a_create_does_not_replace_an_existing_job() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["If-None-Match"] == "*"
        assert request.url.params["api-version"] == "2014-04-01"
        return httpx.Response(201, json={"id": "j", **json.loads(request.content)})
    assert client(handle).create_job("cs", "jc", "j", {"state": "enabled"})["id"] == "j"


def test_collections_are_read_from_a_cloud_services_listing() -> None:
    document = (
        f"<CloudServices {NS}><CloudService><Name>cs1</Name><Resources><Resource>"
        "<CloudServiceSettings><GeoRegion>West Europe</GeoRegion></CloudServiceSettings>"
        "<IntrinsicSettings><Plan>Free</Plan><Quota><MaxJobCount>5</MaxJobCount>"
        "<MaxRecurrence><Frequency>Hour</Frequency><Interval>1</Interval></MaxRecurrence>"
        "</Quota></IntrinsicSettings><Name>jc1</Name>"
        "<ResourceProviderNamespace>Scheduler</ResourceProviderNamespace>"
        "<State>Started</State></Resource></Resources></CloudService></CloudServices>")
    [found] = asm.collections_of(document)
    assert found["cloudService"] == "cs1" and found["name"] == "jc1"
    assert found["plan"] == "Free" and found["maxJobCount"] == 5
    assert found["maxRecurrence"] == {"frequency": "Hour", "interval": 1}


def test_an_answer_that_is_not_xml_is_a_clear_error() -> None:
    api = client(lambda _: httpx.Response(200, text="<CloudServices"))
    with pytest.raises(ClientError, match="not the XML expected"):
        api.list_collections()


def test_a_certificate_file_without_a_key_is_named(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    with pytest.raises(InputError, match=f"client certificate {cert}"):
        tls_context(cert, None)


def test_a_document_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text("{nope")
    with pytest.raises(InputError, match=f"{path}: not valid JSON"):
        read_document(str(path))
    with pytest.raises(InputError, match="no such file"):
        read_document(str(tmp_path / "missing.json"))


# --- nothing reaches another resource than the one named ----------------------------------

def recording(seen: list[str]) -> Handler:
    """A handler that records each request's method and raw path, and answers `{}`."""
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.raw_path.decode()}")
        return httpx.Response(200, json={})
    return handle


def test_a_job_id_reaches_only_the_job_it_names() -> None:
    """Dot segments are refused before anything is sent; anything else that would change
    the path is percent-encoded."""
    seen: list[str] = []
    api = client(recording(seen))
    calls: list[Callable[[str], object]] = [
        lambda job_id: api.delete_job("cs", "jc", job_id),
        lambda job_id: api.patch_job("cs", "jc", job_id, {"state": "disabled"}),
        lambda job_id: api.job_history("cs", "jc", job_id),
        lambda name: api.delete_collection("cs", name),
        lambda name: api.list_jobs(name, "jc")]
    for call in calls:
        for segment in ("", ".", ".."):
            with pytest.raises(InputError, match="cannot be a segment of a URL path"):
                call(segment)
    assert seen == []
    for job_id in ("a/../../b", "%2e%2e", "a?b#c", "..."):
        api.get_job("cs", "jc", job_id)
    base = "GET /sub1/cloudservices/cs/resources/scheduler/~/JobCollections/jc/jobs/"
    assert [line.partition("?")[0] for line in seen] == [
        base + "a%2F..%2F..%2Fb", base + "%252e%252e", base + "a%3Fb%23c", base + "..."]


def test_a_path_the_url_library_would_rewrite_is_refused() -> None:
    http = httpx.Client(base_url="https://service.test/sub1")
    for path in ("/jobs/.", "/jobs/..", "/jobs/a/../b", "/jobs/./a"):
        request = http.build_request("DELETE", path)
        with pytest.raises(InputError, match="another resource; nothing was sent"):
            refuse_rewritten(request, http.base_url, path)
    refuse_rewritten(http.build_request("DELETE", "/jobs/a%2F..", params={"x": "/.."}),
                     http.base_url, "/jobs/a%2F..")


def test_waiting_for_a_run_ends_when_it_pauses() -> None:
    polled: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        polled.append(request.url.path)
        return httpx.Response(200, json={"id": "e1", "status": "paused"})
    pauses: list[float] = []
    found = client(handle, pauses).wait_for_execution("cs", "jc", "j",
                                                      {"id": "e1", "status": "running"})
    assert found["status"] == "paused"
    assert len(polled) == 1 and len(pauses) == 1


@pytest.mark.parametrize("execution_id", ["..", "../../../jobs", "e1?x"])
def test_an_execution_id_the_service_should_not_have_sent_is_not_polled(
        execution_id: str) -> None:
    seen: list[str] = []
    with pytest.raises(ClientError, match="cannot be polled"):
        client(recording(seen)).wait_for_execution("cs", "jc", "j", {
            "id": execution_id, "status": "running"})
    assert seen == []
