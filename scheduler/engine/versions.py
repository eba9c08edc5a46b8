"""Jobs as the engine runs them: each version (etag) parsed and unsealed once."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from scheduler.domain.recurrence import Recurrence
from scheduler.job_document import stored_schedule, with_secrets
from scheduler.security.secrets import SecretBox

CACHE_SIZE = 10_000


@dataclass(frozen=True)
class JobVersion:
    """One version (etag) of a job as the engine runs it: parsed and unsealed once."""

    job_id: str
    etag: str
    collection: str
    start: datetime | None
    recurrence: Recurrence | None
    document: Mapping[str, Any]


# A job row with at least: id, etag, job_id, name (its collection's), definition, secrets.
JobRow = Row[*tuple[Any, ...]]


class JobVersions:
    """The versions of the jobs a node runs, the least recently used dropped past `size`."""

    def __init__(self, box: SecretBox, size: int = CACHE_SIZE) -> None:
        self.box, self.size = box, size
        self._versions: OrderedDict[tuple[int, str], JobVersion] = OrderedDict()

    def get(self, row: JobRow) -> JobVersion:
        """The version a job row holds, parsed the first time its etag is seen."""
        key = (row.id, row.etag)
        found = self._versions.get(key)
        if found is not None:
            self._versions.move_to_end(key)
            return found
        found = self._parse(row)
        self._versions[key] = found
        if len(self._versions) > self.size:
            self._versions.popitem(last=False)
        return found

    def _parse(self, row: JobRow) -> JobVersion:
        definition = json.loads(row.definition)
        start, recurrence = stored_schedule(definition)
        document = with_secrets(definition, self.box.open(row.secrets)) if row.secrets \
            else definition
        return JobVersion(row.job_id, row.etag, row.name, start, recurrence, document)
