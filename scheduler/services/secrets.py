"""Key rotation for the secrets at rest: a new key first in the key file, every stored
secret encrypted again with it, then the keys before the previous one dropped.

The home's key check (`services.home`) is sealed again with the new key first, so that nodes
started during or after the rotation must hold the new key file. Processes keep running
meanwhile: a `SecretBox` loaded from the key file opens a row with whichever key sealed it,
and reads the file again when it meets a key it has not seen.
A rotation that stopped half-way is safe to run again: no key is dropped before every row
was re-encrypted with a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import Select, Table, Update, bindparam, select, update

from scheduler.db.models import EXECUTIONS, JOBS, NOTIFICATION_CHANNELS
from scheduler.db.session import Database
from scheduler.security.secrets import SecretBox, read_key_file, write_key_file
from scheduler.services.home import check_home_key, reseal_home_key

ROTATION_BATCH = 500  # rows per transaction: short enough not to hold the engine's rows long


@dataclass(frozen=True)
class KeyRotation:
    """What a rotation did."""

    jobs: int  # job secrets re-encrypted with the new key
    executions: int  # execution secrets re-encrypted with the new key
    unreadable: int  # secrets no key of the file opens: left as they were
    keys_dropped: int  # old keys removed from the key file
    channels: int = 0  # notification channel secrets re-encrypted with the new key


def rotate_secret_keys(db: Database, key_file: Path, batch_size: int = ROTATION_BATCH
                       ) -> KeyRotation:
    """Add a new key, re-encrypt every stored secret and the home's key check with it, then
    drop the keys older than the one it replaces. A key file that is not the database's
    home's is refused (HomeKeyMismatch) before anything changes."""
    check_home_key(db, SecretBox.from_file(key_file))
    box = add_secret_key(key_file)
    reseal_key_check(db, box)
    jobs, unreadable_jobs = reencrypt_secrets(db, JOBS, box, batch_size)
    executions, unreadable_executions = reencrypt_secrets(db, EXECUTIONS, box, batch_size)
    channels, unreadable_channels = reencrypt_secrets(db, NOTIFICATION_CHANNELS, box,
                                                      batch_size)
    dropped = drop_old_secret_keys(key_file, box)
    return KeyRotation(jobs, executions,
                       unreadable_jobs + unreadable_executions + unreadable_channels, dropped,
                       channels)


def add_secret_key(key_file: Path) -> SecretBox:
    """Put a new key first in the key file; a box of all its keys, the new one sealing."""
    box = SecretBox([SecretBox.new_key(), *read_key_file(key_file)])
    write_key_file(key_file, box.keys)
    return box


def reseal_key_check(db: Database, box: SecretBox) -> None:
    """Seal the home's key check with the box's newest key, before any secret is: from then
    on the check opens with the new key file, as every secret does, sealed with the new key
    or still with the previous one; a node given the file of before is refused at start,
    for it could not open what the rotation re-encrypts. The check is sealed with a key the
    file keeps until the next rotation, so a rotation that stops anywhere leaves it valid."""
    with db.transaction() as session:
        reseal_home_key(session, box)


def drop_old_secret_keys(key_file: Path, box: SecretBox) -> int:
    """Keep only the box's newest key and the one before it; how many keys were dropped."""
    # The previous key stays: a running process may have sealed a row with it after the new
    # key was written and before it reloaded the file, too late for the re-encryption pass
    # to see. Its next seal or failed open reloads the file; the next rotation re-encrypts
    # the row before it drops this key.
    kept = box.keys[:2]
    # Only the file `add_secret_key` wrote is trimmed: one written meanwhile by another
    # rotation holds keys whose rows this one never re-encrypted.
    if len(box.keys) == len(kept) or read_key_file(key_file) != list(box.keys):
        return 0
    write_key_file(key_file, kept)
    return len(box.keys) - len(kept)


def reencrypt_secrets(db: Database, table: Table, box: SecretBox,
                      batch_size: int = ROTATION_BATCH) -> tuple[int, int]:
    """Encrypt the `secrets` of every row of `table` again with the box's newest key,
    `batch_size` rows per transaction; (rows re-encrypted, rows no key opens)."""
    done = unreadable = 0
    after: Any = None
    while True:
        with db.snapshot() as session:
            rows = session.execute(_next_batch(table, after is None),
                                   {"after": after, "limit": batch_size}).all()
        if not rows:
            return done, unreadable
        after = rows[-1].id
        changes = []
        for row in rows:
            try:
                changes.append({"pk": row.id, "old": row.secrets, "new": box.rotate(row.secrets)})
            except InvalidToken:
                unreadable += 1
        if changes:
            # Read and encrypted outside the transaction, so that SQLite's write lock (and
            # PostgreSQL's row locks) are held only for the updates; a row written since it
            # was read keeps what its writer sealed, with a current key.
            with db.transaction() as session:
                done += session.connection().execute(_reencrypt(table), changes).rowcount


@cache
def _next_batch(table: Table, first: bool) -> Select[Any]:
    """The next rows with secrets, in primary key order, after the key bound as `after`."""
    query = select(table.c.id, table.c.secrets).where(table.c.secrets.is_not(None))
    if not first:
        query = query.where(table.c.id > bindparam("after"))
    return query.order_by(table.c.id).limit(bindparam("limit"))


@cache
def _reencrypt(table: Table) -> Update:
    """Replace a row's secrets, only if they are still what was read."""
    return (update(table)
            .where(table.c.id == bindparam("pk"), table.c.secrets == bindparam("old"))
            .values(secrets=bindparam("new")))
