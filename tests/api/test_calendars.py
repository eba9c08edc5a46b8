"""A job collection's exclusion calendars over the API, on both databases: created, replaced,
read, listed and deleted; every document that breaks a rule refused naming the field, with
nothing stored; each change audited; a collection's calendars go with it; and what the engine
reads of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.api.calendars import calendar_document, parse_calendar
from scheduler.db.models import Calendar
from scheduler.db.session import Database
from scheduler.domain import InvalidField
from scheduler.domain.calendars import MAX_CALENDARS, MAX_DATES, MAX_RULES
from scheduler.services.calendars import calendar_names, read_calendars
from scheduler.services.collections import collection_id
from tests.support import Tenant, collection_xml

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
CALENDARS = f"{COLLECTION}/calendars"
ASM_COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
HOLIDAYS = {"timeZone": "Europe/Berlin", "description": "German public holidays",
            "dates": ["2026-12-26", "2026-12-25"],
            "rules": ["FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1", "FREQ=WEEKLY;BYDAY=SA,SU"]}


def put(tenant: Tenant, name: str, document: Any, status: int) -> dict[str, Any]:
    """PUT a calendar, which must answer `status`; the document answered."""
    response = tenant.call("PUT", f"{CALENDARS}/{name}", document)
    assert response.status_code == status, response.data
    answered: dict[str, Any] = response.get_json()
    return answered


def listed(tenant: Tenant) -> list[dict[str, Any]]:
    """The collection's calendars, which must answer 200."""
    response = tenant.call("GET", CALENDARS)
    assert response.status_code == 200, response.data
    value: list[dict[str, Any]] = response.get_json()["value"]
    return value


def refusal(tenant: Tenant, name: str, document: Any) -> str:
    """The message of a PUT that must be refused with 400."""
    response = tenant.call("PUT", f"{CALENDARS}/{name}", document)
    assert response.status_code == 400, response.data
    message: str = response.get_json()["error"]["message"]
    return message


def audit_kinds(tenant: Tenant) -> list[tuple[str, str | None]]:
    """The collection's audit, newest first, as (kind, detail)."""
    response = tenant.call("GET", f"{COLLECTION}/audit")
    assert response.status_code == 200, response.data
    return [(change["kind"], change.get("detail")) for change in response.get_json()["value"]]


def test_a_calendar_is_created_read_replaced_listed_and_deleted(collection: Tenant) -> None:
    created = put(collection, "Holidays", HOLIDAYS, 201)
    assert created == {"name": "Holidays", "timeZone": "Europe/Berlin",
                       "description": "German public holidays",
                       "dates": ["2026-12-25", "2026-12-26"], "rules": HOLIDAYS["rules"]}
    assert collection.call("GET", f"{CALENDARS}/HOLIDAYS").get_json() == created

    replaced = put(collection, "holidays", {"dates": ["2027-01-01"]}, 200)
    assert replaced == {"name": "Holidays", "timeZone": "UTC", "dates": ["2027-01-01"],
                        "rules": []}
    put(collection, "alpha", {}, 201)
    assert [item["name"] for item in listed(collection)] == ["alpha", "Holidays"]
    assert listed(collection)[1] == replaced

    assert collection.call("DELETE", f"{CALENDARS}/HoliDays").status_code == 200
    assert collection.call("GET", f"{CALENDARS}/holidays").status_code == 404
    assert [item["name"] for item in listed(collection)] == ["alpha"]


def test_a_document_read_back_can_be_put_again(collection: Tenant) -> None:
    shown = put(collection, "holidays", HOLIDAYS, 201)
    assert put(collection, "holidays", shown, 200) == shown
    assert "name: must be the calendar's name" in refusal(collection, "other", shown)


def test_missing_calendars_and_collections_answer_404(collection: Tenant) -> None:
    for method in ("GET", "DELETE"):
        response = collection.call(method, f"{CALENDARS}/nothing")
        assert response.status_code == 404, response.data
        assert response.get_json()["error"]["message"] == "The calendar nothing does not exist."
    elsewhere = CALENDARS.replace("jc1", "jc2")
    for method, path, body in (("GET", elsewhere, None), ("GET", f"{elsewhere}/x", None),
                               ("PUT", f"{elsewhere}/x", HOLIDAYS),
                               ("DELETE", f"{elsewhere}/x", None)):
        response = collection.call(method, path, body)
        assert response.status_code == 404, (method, path, response.data)
        assert "jc2 does not exist" in response.get_json()["error"]["message"]


BAD_DOCUMENTS: list[tuple[Any, str]] = [
    ({"timeZone": "Mars/Olympus"}, "timeZone: 'Mars/Olympus' is not an IANA time zone"),
    ({"timeZone": "Europe"}, "timeZone: 'Europe' is not an IANA time zone"),
    ({"timeZone": 1}, "timeZone: must be a string"),
    ({"dates": ["2026-12-25", "2026-02-30"]}, "dates[1]: 2026-02-30 is not a date"),
    ({"dates": ["25.12.2026"]}, "dates[0]: must be a date, YYYY-MM-DD"),
    ({"dates": "2026-12-25"}, "dates: must be a JSON array"),
    ({"rules": ["FREQ=YEARLY", "FREQ=DAILY;BYHOUR=9"]}, "rules[1]: is not day-based"),
    ({"rules": ["FREQ=HOURLY"]}, "rules[0]: is not day-based"),
    ({"rules": ["FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"]}, "rules[0]: never occurs"),
    ({"rules": ["FREQ=DAILY;BYMONTHDAY=1;X-WHAT=1"]}, "rules[0]: X-WHAT is not a part"),
    ({"rules": ["not a rule"]}, "rules[0]: 'not a rule' is not a NAME=VALUE part"),
    ({"rules": [7]}, "rules[0]: must be a string"),
    ({"holidays": []}, "holidays: is not a field of a calendar"),
    ({"description": "x" * 1025}, "description: must be at most 1024 characters"),
    ({"dates": ["2026-01-01"] * (MAX_DATES + 1)}, f"dates: must have at most {MAX_DATES}"),
    ({"rules": ["FREQ=YEARLY"] * (MAX_RULES + 1)}, f"rules: must have at most {MAX_RULES}"),
    (["FREQ=YEARLY"], "the calendar must be a JSON object"),
]


@pytest.mark.parametrize(("document", "message"), BAD_DOCUMENTS,
                         ids=[message.split(":")[0] for _, message in BAD_DOCUMENTS])
def test_a_document_that_breaks_a_rule_is_refused_naming_the_field_and_stores_nothing(
        collection: Tenant, document: Any, message: str) -> None:
    put(collection, "kept", HOLIDAYS, 201)
    before, audited = listed(collection), audit_kinds(collection)
    assert refusal(collection, "kept", document).startswith(message)
    assert refusal(collection, "new", document).startswith(message)
    assert listed(collection) == before
    assert audit_kinds(collection) == audited


@pytest.mark.parametrize("name", ["with.dot", "x" * 65, "spaced%20name", "caf%C3%A9"])
def test_a_name_that_is_not_one_is_refused(collection: Tenant, name: str) -> None:
    assert refusal(collection, name, HOLIDAYS).startswith("name: ")
    assert listed(collection) == []


def test_a_collection_holds_at_most_a_hundred_calendars(collection: Tenant,
                                                        db: Database) -> None:
    for index in range(MAX_CALENDARS):
        put(collection, f"c{index}", {}, 201)
    response = collection.call("PUT", f"{CALENDARS}/one-more", {})
    assert response.status_code == 409, response.data
    assert response.get_json()["error"]["message"] == (
        "The calendar breaks a quota: a job collection holds at most 100 calendars, and this "
        "one holds 100.")
    assert put(collection, "c0", HOLIDAYS, 200)["name"] == "c0"  # a replace still fits
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(Calendar)) == MAX_CALENDARS


def test_another_subscriptions_collection_is_not_found(collection: Tenant,
                                                       other_tenant: Tenant) -> None:
    put(collection, "holidays", HOLIDAYS, 201)
    for method, body in (("GET", None), ("PUT", HOLIDAYS), ("DELETE", None)):
        response = other_tenant.call(method, f"{CALENDARS}/holidays", body)
        assert response.status_code == 404, (method, response.data)
    assert other_tenant.call("GET", CALENDARS).status_code == 404
    # Its certificate does not open the first subscription's paths either.
    stranger = other_tenant.client.get(f"/{collection.subscription_id}{CALENDARS}")
    assert stranger.status_code == 403
    assert [item["name"] for item in listed(collection)] == ["holidays"]


def test_a_deleted_collection_takes_its_calendars(collection: Tenant, db: Database) -> None:
    put(collection, "holidays", HOLIDAYS, 201)
    put(collection, "weekends", {"rules": ["FREQ=WEEKLY;BYDAY=SA,SU"]}, 201)
    assert collection.call("DELETE", ASM_COLLECTION).status_code == 202
    assert collection.call("GET", CALENDARS).status_code == 404
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(Calendar)) == 0
    assert collection.call("PUT", ASM_COLLECTION, collection_xml()).status_code == 202
    assert listed(collection) == []


def test_every_change_is_audited_with_the_certificates_name(collection: Tenant) -> None:
    put(collection, "holidays", HOLIDAYS, 201)
    put(collection, "Holidays", {**HOLIDAYS, "timeZone": "UTC", "dates": ["2026-12-25"]}, 200)
    put(collection, "holidays", {**HOLIDAYS, "timeZone": "UTC", "dates": ["2026-12-24"]}, 200)
    collection.call("DELETE", f"{CALENDARS}/holidays")
    collection.call("DELETE", f"{CALENDARS}/holidays")  # a 404 records nothing
    response = collection.call("GET", f"{COLLECTION}/audit")
    changes = response.get_json()["value"][:4]
    assert {change["actor"] for change in changes} == {"first"}
    assert [(change["kind"], change["detail"]) for change in changes] == [
        ("calendar.delete", "calendar holidays"),
        ("calendar.put", "calendar holidays: dates changed"),
        ("calendar.put", "calendar holidays: time zone: Europe/Berlin → UTC; dates: 2 → 1"),
        ("calendar.create", "calendar holidays: time zone Europe/Berlin; 2 dates; 2 rules"),
    ]


def test_the_engine_reads_a_collections_calendars_by_their_lower_case_names(
        collection: Tenant, db: Database) -> None:
    put(collection, "Holidays", HOLIDAYS, 201)
    put(collection, "auckland", {"timeZone": "Pacific/Auckland", "dates": ["2026-12-25"]}, 201)
    with db.snapshot() as session:
        found = collection_id(session.connection(), collection.subscription_id, "cs1", "jc1")
        calendars = read_calendars(session, found)
        assert calendar_names(session, found) == {"holidays", "auckland"}
    with db.engine.connect() as conn:
        assert read_calendars(conn, found) == calendars
        assert calendar_names(conn, found) == {"holidays", "auckland"}
    assert sorted(calendars) == ["auckland", "holidays"]
    assert calendars["holidays"].name == "Holidays"
    christmas_eve_late = datetime(2026, 12, 24, 12, 30, tzinfo=UTC)
    assert calendars["auckland"].excludes(christmas_eve_late)
    assert not calendars["holidays"].excludes(christmas_eve_late)
    assert calendars["holidays"].excludes(datetime(2026, 12, 24, 23, 30, tzinfo=UTC))


def test_a_calendar_write_is_pollable_by_its_request_id(collection: Tenant) -> None:
    response = collection.call("PUT", f"{CALENDARS}/holidays", HOLIDAYS)
    operation = collection.call("GET", f"/operations/{response.headers['x-ms-request-id']}")
    assert operation.status_code == 200
    assert b"<Status>Succeeded</Status>" in operation.data
    assert b"<HttpStatusCode>201</HttpStatusCode>" in operation.data


def test_another_api_version_is_refused(collection: Tenant) -> None:
    response = collection.call("GET", f"{CALENDARS}?api-version=2016-03-01")
    assert response.status_code == 400
    assert collection.call("GET", f"{CALENDARS}?api-version=2014-04-01").status_code == 200


def test_a_body_that_is_not_json_is_refused(collection: Tenant) -> None:
    response = collection.call("PUT", f"{CALENDARS}/holidays", data="{",
                               content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["error"]["message"]
    assert listed(collection) == []


def test_the_cloud_service_and_collection_paths_match_in_any_case(collection: Tenant) -> None:
    put(collection, "holidays", HOLIDAYS, 201)
    path = "/CloudServices/CS1/resources/scheduler/~/JobCollections/JC1/calendars/HOLIDAYS"
    assert collection.call("GET", path).get_json()["name"] == "holidays"


def test_the_document_reads_back_as_the_same_calendar() -> None:
    calendar = parse_calendar("Holidays", {**HOLIDAYS, "dates": ["2026-12-26", "2026-12-25",
                                                                 "2026-12-25"]})
    document = calendar_document(calendar)
    assert document == {"name": "Holidays", **HOLIDAYS,
                        "dates": ["2026-12-25", "2026-12-26"]}
    assert parse_calendar("HOLIDAYS", document).dates == calendar.dates
    assert parse_calendar("Holidays", document) == calendar
    empty = parse_calendar("cal", {"timeZone": None, "description": None, "dates": None,
                                   "rules": None})
    assert calendar_document(empty) == {"name": "cal", "timeZone": "UTC", "dates": [],
                                        "rules": []}


@pytest.mark.parametrize(("name", "document", "field"), [
    ("a.b", {}, "name"), ("cal", {"name": "other"}, "name"), ("cal", {"name": 5}, "name"),
    ("cal", {"excludeDates": []}, "excludeDates"), ("cal", [], ""),
    ("cal", {"rules": ["FREQ=DAILY", "FREQ=HOURLY"]}, "rules[1]"),
])
def test_a_document_that_breaks_a_rule_names_the_field(name: str, document: Any,
                                                         field: str) -> None:
    with pytest.raises(InvalidField) as refused:
        parse_calendar(name, document)
    assert refused.value.field == field
