"""A new action type is its typed action, its codec entry and its executor, and nothing else.

The type made here, `echo`, exists nowhere in the service: the test gives its typed action
(with a secret and a duration), registers its wire codec and its executor, and then creates,
reads, patches, stores, seals and fires a job of that type through the API and the engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from flask import Flask
from sqlalchemy import select

from scheduler.actions.base import ExecutionContext, Outcome
from scheduler.actions.http import HttpCaller
from scheduler.actions.registry import standard_actions
from scheduler.api.schemas.job_codec import ACTION_CODECS, ActionCodec, register_action_codec
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.models import Job
from scheduler.db.session import Database
from scheduler.domain import InvalidField
from scheduler.domain.durations import Duration
from scheduler.domain.jobs import ACTION_KINDS, Action, Secret
from scheduler.domain.retry import RetryPolicy
from scheduler.settings import Settings
from tests.engine.harness import MakeDriver
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, new_tenant


@dataclass(frozen=True, slots=True)
class EchoAction:
    """Says `text` to an endpoint, signed with a token."""

    kind: ClassVar[str] = "echo"
    endpoint: str
    token: Secret
    text: str
    retry: RetryPolicy | None
    pause: Duration | None = None


def parse_echo(value: Any, name: str, context: Any) -> dict[str, Any]:
    """The `echoMessage` of a job: `endpoint`, `text`, a secret `token` and a `pause`."""
    if not isinstance(value, dict) or set(value) - {"endpoint", "token", "text", "pause"}:
        raise InvalidField(name, "must be an object of endpoint, token, text and pause")
    for key in ("endpoint", "text", "token"):
        if not isinstance(value.get(key), str):
            raise InvalidField(f"{name}.{key}", "is required")
    context.keep_secret(f"{name}.token", value["token"])
    normal = {"endpoint": value["endpoint"], "text": value["text"]}
    if value.get("pause") is not None:
        normal["pause"] = Duration.parse(value["pause"]).text
    return normal


def decode_echo(message: Mapping[str, Any], kind: str, retry: RetryPolicy | None
                ) -> EchoAction:
    """The typed action of a normalised message, its token in it."""
    pause = message.get("pause")
    return EchoAction(message["endpoint"], Secret(message["token"]), message["text"], retry,
                      Duration.parse(pause) if pause else None)


def encode_echo(action: EchoAction, secrets: bool) -> dict[str, Any]:
    """The message of a typed action, with its token or without."""
    message: dict[str, Any] = {"endpoint": action.endpoint, "text": action.text}
    if action.pause is not None:
        message["pause"] = action.pause.text
    if secrets:
        message["token"] = action.token.value
    return message


@dataclass
class EchoExecutor:
    """Runs `echo` actions by keeping what each would say, signed, and succeeding."""

    said: list[tuple[str, str, str, str]] = field(default_factory=list)

    def prepare(self, action: Action, context: ExecutionContext) -> EchoAction | Outcome:
        """The typed action itself: nothing to fill in."""
        assert isinstance(action, EchoAction)
        return action

    def submit(self, action: EchoAction, timeout: float) -> asyncio.Future[Any]:
        """Keep what is said; done on the loop's next turn."""
        self.said.append((action.endpoint, action.token.value, action.text,
                          action.pause.text if action.pause else ""))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.get_loop().call_soon(done.set_result, None)
        return done

    def outcome(self, action: EchoAction, done: asyncio.Future[Any], timeout: float
                ) -> Outcome:
        """Success, saying where it went."""
        return Outcome(True, f"Echo Action - said {action.text!r} to {action.endpoint}")

    def describe(self, action: EchoAction) -> Mapping[str, Any]:
        """What it says, its token left out."""
        return {"endpoint": action.endpoint, "text": action.text}

    async def close(self) -> None:
        """Nothing is held open."""


@pytest.fixture
def echo_type() -> Iterator[None]:
    """The `echo` type's codec registered (with its typed action) for one test."""
    register_action_codec(ActionCodec("echo", "echoMessage", EchoAction, parse_echo,
                                      decode_echo, encode_echo))
    yield
    del ACTION_CODECS["echo"]
    del ACTION_KINDS["echo"]


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, db: Database) -> Flask:
    """The API, served from the test database."""
    return create_app(settings, clock, db=db, background=False)


@pytest.fixture
def tenant(app: Flask, db: Database, clock: FrozenClock) -> Tenant:
    """A tenant with a cloud service and a job collection."""
    made = new_tenant(app, db, clock)
    assert made.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert made.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                     collection_xml()).status_code == 202
    return made


ECHO_JOB = {"startTime": "2026-03-01T12:00:10Z",
            "action": {"type": "echo", "echoMessage": {
                "endpoint": "hall", "text": "hello", "token": "t0ken", "pause": "PT2S"},
                "retryPolicy": {"retryType": "none"}}}


def test_an_unregistered_type_is_refused(tenant: Tenant) -> None:
    refused = tenant.call("PUT", f"{JOBS}/echo", ECHO_JOB)
    assert refused.status_code == 400
    assert "action.echoMessage: is not a known field" in refused.get_json()["error"]["message"]
    typed = tenant.call("PUT", f"{JOBS}/echo", {"action": {"type": "echo"}})
    assert typed.status_code == 400
    assert "action.type: must be one of http, https" in typed.get_json()["error"]["message"]


def test_a_registered_type_is_written_read_stored_sealed_and_fired(
        echo_type: None, tenant: Tenant, app: Flask, db: Database, clock: FrozenClock,
        make_driver: MakeDriver) -> None:
    created = tenant.call("PUT", f"{JOBS}/echo", ECHO_JOB)
    assert created.status_code == 201, created.data
    shown = {"type": "echo", "echoMessage": {"endpoint": "hall", "text": "hello",
                                             "pause": "PT2S"},
             "retryPolicy": {"retryType": "none"}}
    assert created.get_json()["action"] == shown
    assert tenant.call("GET", f"{JOBS}/echo").get_json()["action"] == shown
    with db.snapshot() as session:
        row = session.scalars(select(Job)).one()
    box = app.extensions["scheduler"].box
    assert "t0ken" not in row.definition and box.open(row.secrets) == {"action.token": "t0ken"}
    assert json.loads(row.definition)["action"]["kind"] == "echo"

    patched = tenant.call("PATCH", f"{JOBS}/echo", {"action": {"echoMessage": {"text": "hi"}}})
    assert patched.status_code == 200, patched.data
    assert patched.get_json()["action"]["echoMessage"]["text"] == "hi"

    echo = EchoExecutor()
    actions = standard_actions(HttpCaller(allow_private_networks=True))
    actions.register(echo, "echo")
    driver = make_driver(actions=actions, app=app)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert echo.said == [("hall", "t0ken", "hi", "PT2S")]
    [entry] = tenant.call("GET", f"{JOBS}/echo/history").get_json()
    assert entry["status"] == "completed"
    assert entry["message"] == "Echo Action - said 'hi' to hall"
