"""A job as the service acts on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.domain.executions import MAIN_ACTION
from scheduler.domain.recurrence import Recurrence, shortest_gap
from scheduler.domain.retry import RetryPolicy
from scheduler.domain.states import JobState

STATES = tuple(JobState)


@dataclass
class JobSpec:
    """A valid job: its public definition, its secrets, and the parts the service acts on."""

    definition: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    state: str = JobState.ENABLED
    state_details: str | None = None
    start_time: datetime | None = None
    recurrence: Recurrence | None = None
    uses_authentication: bool = False

    @property
    def shortest_gap_seconds(self) -> int | None:
        """The shortest time between two occurrences, in seconds; None for one-shot jobs."""
        if self.recurrence is None:
            return None
        return int(shortest_gap(self.recurrence).total_seconds())


@dataclass(frozen=True, slots=True)
class BasicAuthentication:
    """HTTP Basic credentials."""

    username: str
    password: str


@dataclass(frozen=True, slots=True)
class CertificateAuthentication:
    """A client certificate: a base64 PKCS#12 file and its password."""

    pfx: str
    password: str | None


@dataclass(frozen=True, slots=True)
class ActiveDirectoryAuthentication:
    """An Azure AD client-credentials grant, for a Bearer token."""

    tenant: str
    audience: str
    client_id: str
    secret: str


HttpAuthentication = BasicAuthentication | CertificateAuthentication | \
    ActiveDirectoryAuthentication


@dataclass(frozen=True, slots=True)
class HttpAction:
    """An `http` or `https` action: one request, with placeholders still in it."""

    kind: str
    method: str
    uri: str
    headers: Mapping[str, str]
    body: str | None
    authentication: HttpAuthentication | None
    retry: RetryPolicy


@dataclass(frozen=True, slots=True)
class OtherAction:
    """An action whose type has no typed definition yet (queues, sequences): its fields as
    the job document holds them."""

    kind: str
    fields: Any
    retry: RetryPolicy


Action = HttpAction | OtherAction


@dataclass(frozen=True)
class JobDefinition:
    """What a job does and when: the engine's view of one version of a job."""

    start: datetime | None
    recurrence: Recurrence | None
    parameters: Mapping[str, Any]
    action: Action
    error_action: Action | None

    def action_named(self, name: str) -> Action | None:
        """The main action (`MainAction`) or the error action (`ErrorAction`)."""
        return self.action if name == MAIN_ACTION else self.error_action
