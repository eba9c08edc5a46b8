"""Standard Webhooks signatures of outbound calls (https://www.standardwebhooks.com).

A secret is written `whsec_` and the standard base64 of 24 to 64 random bytes. A call carries
`webhook-id`, `webhook-timestamp` (whole Unix seconds when it is sent) and `webhook-signature`:
`v1,` and the base64 HMAC-SHA256, keyed with the secret's bytes, of `id.timestamp.body`. While
a secret is being replaced, the call is signed with both, the signatures one space apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
# The headers a signed call carries, which the service writes (lower case).
SIGNATURE_HEADERS = frozenset({WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE})
SECRET_RULE = (f"must be {SECRET_PREFIX} followed by the base64 of "
               f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes")


def secret_key(secret: str) -> bytes:
    """The key bytes of a `whsec_` secret; ValueError (saying `SECRET_RULE`) if it is not
    one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(SECRET_RULE)
    text = secret[len(SECRET_PREFIX):]
    try:  # padding may be left out, as verifiers allow
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(SECRET_RULE) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"{SECRET_RULE}, not {len(key)}")
    return key


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs the calls of one attempt: its message id and its keys (the current secret's
    first, then the previous one's while it is being replaced)."""

    message_id: str
    keys: tuple[bytes, ...] = field(repr=False)

    def headers(self, timestamp: int, body: bytes) -> dict[str, str]:
        """The three headers of a call sent at `timestamp` (Unix seconds) with `body`."""
        signed = f"{self.message_id}.{timestamp}.".encode() + body
        signatures = " ".join(
            "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            for key in self.keys)
        return {WEBHOOK_ID: self.message_id, WEBHOOK_TIMESTAMP: str(timestamp),
                WEBHOOK_SIGNATURE: signatures}
