"""`serviceBusQueue` and `serviceBusTopic` actions against a local HTTPS endpoint that checks
each request's SAS token as Service Bus documents it, and answers as Service Bus does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote, unquote_plus

import pytest

from scheduler.actions.service_bus import sas_token
from scheduler.clock import FrozenClock
from scheduler.security import pki
from tests.actions.brokers import MakeService, Service
from tests.engine.harness import Answer, Received, Receiver

KEY_NAME, KEY = "RootManageSharedAccessKey", "c2VjcmV0IGtleSBvZiB0aGUgbmFtZXNwYWNl"
UNAUTHORIZED = (b"<Error><Code>401</Code><Detail>InvalidSignature: The token has an invalid "
                b"signature. TrackingId:0</Detail></Error>")


def token_problem(token: str, url: str, now: datetime) -> str | None:
    """Why a SAS token does not authorize a request to `url`, checked by the recipe of
    Service Bus's documentation: sr is the URL-encoded resource URI (a prefix of the
    request's), sig the URL-encoded base64 HMAC-SHA256 of `sr + "\\n" + se` under the key
    named skn, se the expiry in seconds since the epoch; None if it does."""
    scheme, _, rest = token.partition(" ")
    if scheme != "SharedAccessSignature":
        return "not a SharedAccessSignature"
    fields = dict(part.split("=", 1) for part in rest.split("&") if "=" in part)
    if set(fields) != {"sr", "sig", "se", "skn"}:
        return f"fields {sorted(fields)}"
    if fields["skn"] != KEY_NAME:
        return "unknown key name"
    if int(fields["se"]) <= now.timestamp():
        return "expired"
    if not url.lower().startswith(unquote_plus(fields["sr"])):
        return "signed for another resource"
    expected = base64.b64encode(hmac.new(
        KEY.encode(), f"{fields['sr']}\n{fields['se']}".encode(), hashlib.sha256).digest())
    if unquote(fields["sig"]).encode() != expected:
        return "bad signature"
    if fields["sr"] != quote_plus(unquote_plus(fields["sr"])):
        return "sr not URL-encoded"
    return None


@dataclass
class ServiceBusEndpoint:
    """The local endpoint: its receiver, CA and the clock tokens are checked against."""

    receiver: Receiver
    ca: pki.IssuedCertificate
    clock: FrozenClock

    @property
    def template(self) -> str:
        """The namespace endpoint template the engine is given."""
        return f"https://127.0.0.1:{self.receiver.port}/{{namespace}}"

    def trust(self) -> ssl.SSLContext:
        """A client context that trusts this endpoint's CA, and nothing else."""
        return ssl.create_default_context(cadata=self.ca.cert_pem.decode())

    def answer(self, request: Received) -> Answer:
        """201 for a well-signed Send Message, else Service Bus's 401."""
        url = f"https://127.0.0.1:{self.receiver.port}{request.path}"
        problem = token_problem(request.header("Authorization"), url, self.clock.now())
        if problem is not None or not request.path.endswith("/messages"):
            return 401, {"Content-Type": "application/xml"}, UNAUTHORIZED
        return 201, {}, b""


@pytest.fixture
def bus(tmp_path: Path, clock: FrozenClock, start_receiver: Callable[..., Receiver]
        ) -> ServiceBusEndpoint:
    """A running local Service Bus endpoint with its own CA."""
    now = datetime.now(UTC)  # the TLS stacks check validity against the real time
    ca = pki.create_ca("service bus test CA", now)
    server = pki.issue_server_certificate(ca, ["127.0.0.1"], now)
    (tmp_path / "bus.pem").write_bytes(server.bundle_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "bus.pem")
    endpoint = ServiceBusEndpoint(start_receiver(tls=context), ca, clock)
    endpoint.receiver.responder = endpoint.answer
    return endpoint


def bus_action(kind: str = "serviceBusQueue", key: str = KEY, **extra: Any) -> dict[str, Any]:
    """A Service Bus action without retries."""
    target = {"topicPath": "alerts"} if kind == "serviceBusTopic" else {"queueName": "orders"}
    message = {"namespace": "shop-bus", **target, "message": "order {{parameters.order}}",
               "authentication": {"sasKeyName": KEY_NAME, "sasKey": key,
                                  "type": "SharedAccessKey"}, **extra}
    field_name = "serviceBusTopicMessage" if kind == "serviceBusTopic" \
        else "serviceBusQueueMessage"
    return {"type": kind, "retryPolicy": {"retryType": "none"}, field_name: message}


def bus_service(make_service: MakeService, bus: ServiceBusEndpoint) -> Service:
    """The API and an engine that send Service Bus messages to the local endpoint."""
    return make_service(service_bus_endpoint=bus.template, tls_context=bus.trust)


def test_a_queue_message_is_sent_signed_with_its_properties(
    bus: ServiceBusEndpoint, make_service: MakeService,
) -> None:
    service = bus_service(make_service, bus)
    action = bus_action(
        brokeredMessageProperties={"label": "new", "correlationId": "c-1",
                                   "contentType": "application/json"},
        customMessageProperties={"tenant": "{{parameters.tenant}}"},
        message='{"order": "{{parameters.order}}"}')
    service.put("send", action, parameters={"order": "42", "tenant": "acme"})
    assert service.fire() == 1
    [request] = bus.receiver.requests
    [execution] = service.executions("send")
    assert request.method == "POST" and request.path == "/shop-bus/orders/messages"
    assert request.body == b'{"order": "42"}'
    assert request.header("Content-Type") == "application/json"
    assert json.loads(request.header("BrokerProperties")) == {
        "Label": "new", "CorrelationId": "c-1", "MessageId": execution["id"]}
    assert json.loads(request.header("tenant")) == "acme"
    assert json.loads(request.header("x-ms-execution-tag")) == execution["id"]
    assert execution["status"] == "completed"
    [history] = service.history("send")
    assert history["message"] == ("ServiceBus Action - The message was sent to 'orders' in "
                                  "namespace 'shop-bus'")


def test_a_topic_message_goes_to_the_topic(
    bus: ServiceBusEndpoint, make_service: MakeService,
) -> None:
    service = bus_service(make_service, bus)
    service.put("announce", bus_action("serviceBusTopic"), parameters={"order": "7"})
    assert service.fire() == 1
    [request] = bus.receiver.requests
    assert request.path == "/shop-bus/alerts/messages"
    assert [h["status"] for h in service.history("announce")] == ["completed"]


def test_a_wrong_key_fails_the_attempt_with_service_bus_s_reason(
    bus: ServiceBusEndpoint, make_service: MakeService,
) -> None:
    service = bus_service(make_service, bus)
    service.put("denied", bus_action(key="bm90IHRoZSBrZXk="), parameters={"order": "1"})
    assert service.fire() == 1
    [history] = service.history("denied")
    assert history["status"] == "failed"
    assert history["message"] == (
        "ServiceBus Action - The message could not be sent to 'orders' in namespace 'shop-bus': "
        "401 Unauthorized: InvalidSignature: The token has an invalid signature. TrackingId:0")


def test_the_token_check_refuses_what_service_bus_refuses(clock: FrozenClock) -> None:
    """The endpoint's check is not a formality: each broken part of a token is caught."""
    url = "https://127.0.0.1:1/shop/orders/messages"
    expiry = int(clock.now().timestamp()) + 60
    good = sas_token("https://127.0.0.1:1/shop/orders", KEY_NAME, KEY, expiry)
    assert token_problem(good, url, clock.now()) is None
    assert token_problem(good, "https://127.0.0.1:1/shop/other/messages", clock.now()) \
        == "signed for another resource"
    assert token_problem(sas_token("https://127.0.0.1:1/shop/orders", KEY_NAME, "other",
                                   expiry), url, clock.now()) == "bad signature"
    assert token_problem(sas_token("https://127.0.0.1:1/shop/orders", KEY_NAME, KEY,
                                   expiry - 120), url, clock.now()) == "expired"
    assert token_problem(good.replace(f"skn={KEY_NAME}", "skn=other"), url, clock.now()) \
        == "unknown key name"
