"""The ids and names the client puts into a URL path: its own check, held against the
service's by sending each name to the real API."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from scheduler.client.errors import InputError
from scheduler.client.names import check_execution_id, check_name, is_name, thumbprint_of
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, http_job

# Names that would reach another resource, or that the service refuses.
HOSTILE = [
    "", ".", "..", "...", ".hidden", "a/b", "/", "../x", "a\\b", "%2e", "%2E%2E", "a%2Fb",
    "a b", "a?b", "a#b", "a;b", "a:b", "~a", "-a", "_a", "a\n", "\x1b[31m", "a\x00",
    "\u00e9t\u00e9", "\uff41", "a" * 101,
]
NORMAL = ["a", "Z", "0", "job-1", "job_1", "job.1", "a.", "a..b", "A9-_.x", "a" * 100]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_is_refused(name: str) -> None:
    assert not is_name(name)


@pytest.mark.parametrize("name", NORMAL)
def test_a_normal_name_is_taken(name: str) -> None:
    assert is_name(name)
    assert check_name(name, "ID", "job id") == name


def test_a_refusal_names_the_argument_and_shows_control_characters_escaped() -> None:
    with pytest.raises(InputError) as refused:
        check_name("\x1b[31m", "--collection", "job collection name")
    message = str(refused.value)
    assert message.startswith("--collection: the job collection name '\\x1b[31m' is not valid")
    assert "\x1b" not in message and "nothing was sent" in message


def test_the_client_and_the_service_take_the_same_names(collection: Tenant) -> None:
    """Each name goes to the API as a cloud service, a job collection and a job id: the
    service takes it exactly when the client would send it."""
    for name in [*HOSTILE, *NORMAL]:
        segment = quote(name, safe="")
        answers = {
            "cloud service": collection.call("PUT", f"/cloudservices/{segment}",
                                             CLOUD_SERVICE_XML).status_code,
            "job collection": collection.call(
                "PUT", f"/cloudservices/cs1/resources/scheduler/jobcollections/{segment}",
                collection_xml()).status_code,
            "job": collection.call("PUT", f"{JOBS}/{segment}", http_job()).status_code,
        }
        for what, status in answers.items():
            taken = status < 300
            assert taken == is_name(name), (what, name, status)
            assert taken or 400 <= status < 500, (what, name, status)


@pytest.mark.parametrize("value", ["..", "a/b", "0123456789abcdef", "g" * 32, "a" * 33, ""])
def test_an_execution_id_is_32_hexadecimal_digits(value: str) -> None:
    with pytest.raises(InputError, match=r"^EXECUTION_ID: the execution id .* is not valid"):
        check_execution_id(value, "EXECUTION_ID")


def test_an_execution_id_is_sent_as_the_service_writes_it() -> None:
    assert check_execution_id("01A24AE686C77092AF8CFC6093F6CA9A", "ID") == \
        "01a24ae686c77092af8cfc6093f6ca9a"


def test_a_thumbprint_is_taken_as_tools_print_it() -> None:
    expected = "9B929C5F0573C34A464E3F0C44775B651541C950"
    for written in (expected.lower(), "9b:92:9c:5f:05:73:c3:4a:46:4e:3f:0c:44:77:5b:65:15:41:"
                    "c9:50", "9B929C5F 0573C34A 464E3F0C 44775B65 1541C950"):
        assert thumbprint_of(written, "THUMBPRINT") == expected
    for wrong in ("..", "zz", expected[:-1], expected + "0", "a/" + expected[2:]):
        with pytest.raises(InputError, match=r"^THUMBPRINT: the thumbprint .* is not valid"):
            thumbprint_of(wrong, "THUMBPRINT")
