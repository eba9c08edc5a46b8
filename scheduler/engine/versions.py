"""Jobs as the engine runs them: each version (etag) parsed and unsealed once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scheduler.db.stored_jobs import SealedSecretsError, StoredJobError, open_definition
from scheduler.domain.caches import LruCache
from scheduler.domain.jobs import JobDefinition
from scheduler.domain.recurrence import Recurrence
from scheduler.engine.store import JobRow, LeasedExecution
from scheduler.security.secrets import SecretBox

CACHE_SIZE = 10_000
INLINE = "inline"  # the etag of a run's own definition, which has no job and never changes


class UnreadableJob(Exception):
    """A job's stored version cannot be run: its secrets do not open with this home's keys
    (`kind` "secret"), or its stored definition no longer reads ("definition"). The reason
    names no secret."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


@dataclass(frozen=True)
class JobVersion:
    """One version (etag) of a job as the engine runs it: parsed and unsealed once."""

    job_id: str
    etag: str
    collection: str
    definition: JobDefinition
    region: str = ""  # the region of the collection's cloud service

    @property
    def start(self) -> datetime | None:
        """The job's start time."""
        return self.definition.start

    @property
    def recurrence(self) -> Recurrence | None:
        """The job's recurrence; None for a one-shot job."""
        return self.definition.recurrence


class JobVersions:
    """The versions of the jobs a node runs, the least recently used dropped past `size`."""

    def __init__(self, box: SecretBox, size: int = CACHE_SIZE) -> None:
        self.box, self.size = box, size
        self._versions: LruCache[tuple[int, str], JobVersion] = LruCache(size)

    def get(self, row: JobRow) -> JobVersion:
        """The version a job row holds, parsed the first time its etag is seen."""
        key = (row.id, row.etag)
        found = self._versions.get(key)
        if found is None:
            found = self._parse(row)
            self._versions.put(key, found)
        return found

    def inline(self, row: LeasedExecution, collection: str, region: str) -> JobVersion:
        """The definition a run of an inline definition carries (its `definition` and
        `secrets`), read afresh: each is run once."""
        return JobVersion("", INLINE, collection, self._read(row.definition or "", row.secrets),
                          region)

    def _parse(self, row: JobRow) -> JobVersion:
        return JobVersion(row.job_id, row.etag, row.name,
                          self._read(row.definition, row.secrets), row.region)

    def _read(self, definition: str, secrets: bytes | None) -> JobDefinition:
        """The definition a stored document and its sealed secrets make; `UnreadableJob` if
        either cannot be read."""
        try:
            return open_definition(definition, secrets, self.box)
        except SealedSecretsError:
            raise UnreadableJob("secret", "its secrets do not open with this home's keys "
                                "(secret.key)") from None
        except StoredJobError as exc:
            raise UnreadableJob("definition", f"its stored definition does not read: {exc}"
                                ) from None
        except Exception as exc:
            # With its secrets opened, the error could quote one: say only what kind of
            # error it was.
            raise UnreadableJob("definition", "its stored definition does not read: "
                                f"{type(exc).__name__}") from None
