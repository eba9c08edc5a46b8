"""Job secrets, encrypted at rest."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.fernet import Fernet


class SecretBox:
    """Encrypts and decrypts a job's secrets with the home's key (Fernet: AES-128 + HMAC)."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """Load the key the home was initialised with."""
        return cls(path.read_bytes().strip())

    @staticmethod
    def new_key() -> bytes:
        """A fresh key."""
        return Fernet.generate_key()

    def seal(self, secrets: dict[str, str]) -> bytes | None:
        """Encrypt; None when there is nothing to hide."""
        if not secrets:
            return None
        return self._fernet.encrypt(json.dumps(secrets).encode())

    def open(self, sealed: bytes | None) -> dict[str, str]:
        """Decrypt what `seal` made."""
        if sealed is None:
            return {}
        value: dict[str, str] = json.loads(self._fernet.decrypt(sealed))
        return value
