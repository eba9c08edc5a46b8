"""Standard Webhooks signatures, held against the `standardwebhooks` package's own."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from scheduler.domain.signatures import Signer, secret_key

SENT = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)


@pytest.mark.parametrize(("size", "body"), [(24, ""), (32, '{"a": 1}'), (64, "h\u00e9llo \u2603")])
def test_the_signature_is_the_one_the_standard_makes(size: int, body: str) -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(size))).decode()
    headers = Signer("msg_1", (secret_key(secret),)).headers(int(SENT.timestamp()),
                                                               body.encode())
    assert headers == {"webhook-id": "msg_1", "webhook-timestamp": str(int(SENT.timestamp())),
                       "webhook-signature": Webhook(secret).sign("msg_1", SENT, body)}


def test_with_two_keys_both_signatures_are_given_the_current_first() -> None:
    current, previous = ("whsec_" + base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2))
    signature = Signer("m", (secret_key(current), secret_key(previous))).headers(
        int(SENT.timestamp()), b"x")["webhook-signature"]
    assert signature == " ".join(Webhook(secret).sign("m", SENT, "x")
                                 for secret in (current, previous))


@pytest.mark.parametrize("secret", ["", "whsec_", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
                                    "whsec_" + "A" * 31, "whsec_" + "@" * 32,
                                    "whsec_" + base64.b64encode(bytes(23)).decode(),
                                    "whsec_" + base64.b64encode(bytes(65)).decode()])
def test_a_secret_that_is_not_whsec_and_24_to_64_bytes_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="must be whsec_ followed by the base64 of 24 to 64"):
        secret_key(secret)


def test_the_keys_are_not_in_the_signers_repr() -> None:
    key = secret_key("whsec_" + base64.b64encode(b"k" * 32).decode())
    assert repr(key) not in repr(Signer("m", (key,)))
