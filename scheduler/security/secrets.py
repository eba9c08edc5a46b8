"""Job secrets, encrypted at rest.

The key file holds one Fernet key per line, newest first: secrets are sealed with the newest
and opened with any (MultiFernet), so that keys can be rotated while processes keep running.
A file of one key, as `init` writes it, is the same format.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# What a home's key check seals (see `SecretBox.key_check`).
KEY_CHECK_TEXT = b"scheduler home secret key"


def read_key_file(path: Path) -> list[bytes]:
    """The keys of a key file, newest first."""
    keys = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
    if not keys:
        raise ValueError(f"{path} holds no secret key")
    return keys


def write_key_file(path: Path, keys: Sequence[bytes]) -> None:
    """Replace the key file at once, so that a process reloading it never reads half of it."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(b"".join(key + b"\n" for key in keys))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Keys:
    """Keys and the cipher made of them, swapped as one, so a thread never sees a mix."""

    keys: tuple[bytes, ...]
    fernet: MultiFernet
    signature: tuple[int, int, int] | None  # the key file's (inode, size, mtime) when read

    @classmethod
    def of(cls, keys: Sequence[bytes], signature: tuple[int, int, int] | None) -> _Keys:
        """Keys, newest first, and the signature of the file they came from."""
        return cls(tuple(keys), MultiFernet([Fernet(key) for key in keys]), signature)


def _signature(path: Path) -> tuple[int, int, int]:
    """What changes when the file is replaced: a new inode, and most likely size and time."""
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class SecretBox:
    """Encrypts a job's secrets with the newest key and decrypts with any (Fernet: AES-128 +
    HMAC); a box loaded from a file follows the file as keys are rotated."""

    def __init__(self, keys: bytes | Sequence[bytes], key_file: Path | None = None) -> None:
        self._path = key_file
        signature = _signature(key_file) if key_file is not None else None
        self._state = _Keys.of([keys] if isinstance(keys, bytes) else keys, signature)
        self._reloading = threading.Lock()

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """Load the keys of the home's key file, and follow it."""
        return cls(read_key_file(path), key_file=path)

    @staticmethod
    def new_key() -> bytes:
        """A fresh key."""
        return Fernet.generate_key()

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The keys in use, newest first."""
        return self._state.keys

    def seal(self, secrets: dict[str, str]) -> bytes | None:
        """Encrypt with the newest key; None when there is nothing to hide."""
        if not secrets:
            return None
        # A stat per seal keeps a running process from sealing with a key a rotation
        # superseded for longer than a moment: a rotation keeps only the previous key besides
        # the new one, so a process two rotations behind would write what nobody can read.
        self.reload(only_if_changed=True)
        return self._state.fernet.encrypt(json.dumps(secrets).encode())

    def open(self, sealed: bytes | None) -> dict[str, str]:
        """Decrypt what `seal` made, with whichever key made it."""
        if sealed is None:
            return {}
        value: dict[str, str] = json.loads(self._decrypt(sealed))
        return value

    def key_check(self) -> bytes:
        """A known text sealed with the newest key: whoever holds it learns nothing of the
        key (Fernet is AES with an HMAC, and a known plaintext does not reveal their keys),
        but a box can tell whether one of its keys made it."""
        self.reload(only_if_changed=True)
        return self._state.fernet.encrypt(KEY_CHECK_TEXT)

    def opens_key_check(self, check: bytes) -> bool:
        """Whether one of this box's keys made `check` (see `key_check`)."""
        try:
            return self._decrypt(check) == KEY_CHECK_TEXT
        except InvalidToken:
            return False

    def _decrypt(self, sealed: bytes) -> bytes:
        """Decrypt with whichever key sealed it, reading the key file again if none does."""
        try:
            return self._state.fernet.decrypt(sealed)
        except InvalidToken:
            # Another process may have rotated the keys since this one read them: the row
            # was re-encrypted with a key this process has not seen yet.
            if not self.reload():
                raise
            return self._state.fernet.decrypt(sealed)

    def rotate(self, sealed: bytes) -> bytes:
        """The same secrets, encrypted again with the newest key."""
        return self._state.fernet.rotate(sealed)

    def reload(self, only_if_changed: bool = False) -> bool:
        """Read the key file again; whether the keys changed. With `only_if_changed`, the
        file is read only when its inode, size or modification time differ."""
        if self._path is None:
            return False
        with self._reloading:
            try:
                signature = _signature(self._path)
                if only_if_changed and signature == self._state.signature:
                    return False
                keys = read_key_file(self._path)
                state = _Keys.of(keys, signature)
            except (OSError, ValueError):
                # A serving process keeps the keys it has rather than fail every request
                # over a key file it cannot read now.
                return False
            changed = state.keys != self._state.keys
            self._state = state
            return changed
