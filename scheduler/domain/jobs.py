"""A job as the service acts on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from scheduler.domain.alerts import AlertRules
from scheduler.domain.catch_up import CatchUp
from scheduler.domain.durations import Duration
from scheduler.domain.executions import MAIN_ACTION
from scheduler.domain.overlap import Overlap
from scheduler.domain.recurrence import Recurrence, shortest_gap
from scheduler.domain.retry import DEFAULT_RETRY, RetryPolicy
from scheduler.domain.states import JobState

STATES = tuple(JobState)
Scalar = str | int | float | bool | None  # a JSON value that is not an object or array


@dataclass
class JobSpec:
    """A valid job as a write gives it: its typed definition, and the state it is to have."""

    job: JobDefinition
    state: str = JobState.ENABLED
    state_details: str | None = None
    uses_authentication: bool = False

    @property
    def start_time(self) -> datetime | None:
        """The job's start time."""
        return self.job.start

    @property
    def recurrence(self) -> Recurrence | None:
        """The job's recurrence; None for a one-shot job."""
        return self.job.recurrence

    @property
    def shortest_gap_seconds(self) -> int | None:
        """The shortest time between two occurrences, in seconds; None for one-shot jobs."""
        if self.recurrence is None:
            return None
        return int(shortest_gap(self.recurrence).total_seconds())


@dataclass(frozen=True, slots=True)
class Secret:
    """A value the service keeps sealed at rest and never shows: its repr hides it."""

    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BasicAuthentication:
    """HTTP Basic credentials."""

    kind: ClassVar[str] = "basic"
    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class CertificateAuthentication:
    """A client certificate: a base64 PKCS#12 file and its password, and what the
    certificate in it says (read from the file when the job was written)."""

    kind: ClassVar[str] = "client_certificate"
    pfx: Secret
    password: Secret | None
    thumbprint: str = ""
    subject: str = ""
    expiration: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActiveDirectoryAuthentication:
    """An Azure AD client-credentials grant, for a Bearer token."""

    kind: ClassVar[str] = "active_directory"
    tenant: str
    audience: str
    client_id: str
    secret: Secret


@dataclass(frozen=True, slots=True)
class SignatureAuthentication:
    """Standard Webhooks signatures: each call signed with the secret, and with the
    previous secret too while receivers move to the new one."""

    kind: ClassVar[str] = "signature"
    secret: Secret
    previous_secret: Secret | None = None


HttpAuthentication = BasicAuthentication | CertificateAuthentication | \
    ActiveDirectoryAuthentication | SignatureAuthentication


@dataclass(frozen=True, slots=True)
class CallbackCompletion:
    """An HTTP action whose target answers 202 and posts the attempt's result later to
    `{{execution.callbackUrl}}`: the attempt fails unless the result comes within `timeout`
    (`action.completion`, mode `callback`)."""

    timeout: Duration


# The longest a callback may be waited for.
LONGEST_CALLBACK_WAIT = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class HttpAction:
    """An `http` or `https` action: one request, with placeholders still in it."""

    kind: str
    method: str
    uri: str
    headers: Mapping[str, str]
    body: str | None
    authentication: HttpAuthentication | None
    retry: RetryPolicy | None
    timeout: Duration | None = None  # how long an attempt may take; None: the default
    # How its outcome comes: None, in the answer (`sync`); else posted back by the target.
    completion: CallbackCompletion | None = None


@dataclass(frozen=True, slots=True)
class StorageQueueAction:
    """A `storageQueue` action: one message put on an Azure Storage queue with a SAS token."""

    kind: ClassVar[str] = "storageQueue"
    account: str
    queue: str
    sas_token: Secret
    message: str
    retry: RetryPolicy | None
    timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class ServiceBusAction:
    """A `serviceBusQueue` or `serviceBusTopic` action: one message sent to a queue or topic
    (its `entity`) of a namespace, signed with a shared access key."""

    kind: str
    namespace: str
    entity: str
    message: str
    sas_key_name: str
    sas_key: Secret
    retry: RetryPolicy | None
    transport_type: str | None = None
    content_type: Scalar = None
    # By the names Service Bus's BrokerProperties header gives them (`MessageId`, `Label`).
    broker_properties: Mapping[str, Scalar] = field(default_factory=dict)
    custom_properties: Mapping[str, str] = field(default_factory=dict)
    timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class AmqpAction:
    """An `amqp` action: one message published to an exchange of a configured broker."""

    kind: ClassVar[str] = "amqp"
    broker: str
    exchange: str
    routing_key: str
    message: str
    retry: RetryPolicy | None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class RedisAction:
    """A `redis` action: one entry appended to a stream of a configured broker."""

    kind: ClassVar[str] = "redis"
    broker: str
    stream: str
    message: str
    retry: RetryPolicy | None
    timeout: Duration | None = None


SingleAction = HttpAction | StorageQueueAction | ServiceBusAction | AmqpAction | RedisAction


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a sequence: its own action, retries and timeout."""

    name: str
    action: SingleAction
    retry: RetryPolicy | None  # None: its action's
    timeout: Duration | None = None
    pause_on_failure: bool | None = None  # None when not given, as False
    manual: bool | None = None  # waits for `resume` before it runs

    @property
    def policy(self) -> RetryPolicy:
        """The policy its failures are retried by: its own, else its action's."""
        return self.retry or self.action.retry or DEFAULT_RETRY


@dataclass(frozen=True, slots=True)
class Sequence:
    """A `sequence` action: steps run in order, each seeing the outputs of those before."""

    kind: str
    steps: tuple[Step, ...]
    retry: RetryPolicy | None

    def step_index(self, name: str) -> int | None:
        """The position of the step called `name` (any case)."""
        for index, step in enumerate(self.steps):
            if step.name.lower() == name.lower():
                return index
        return None


Action = SingleAction | Sequence

# Each action type by the `kind` a job names it with, and the typed action it reads as. An
# action type is its typed action registered here, its entry in each wire codec
# (`scheduler.api.schemas.job_codec`) and its executor (`scheduler.actions.registry`).
ACTION_KINDS: dict[str, type] = {
    "http": HttpAction, "https": HttpAction, "storageQueue": StorageQueueAction,
    "serviceBusQueue": ServiceBusAction, "serviceBusTopic": ServiceBusAction,
    "amqp": AmqpAction, "redis": RedisAction, "sequence": Sequence,
}


def register_action_kind(kind: str, action: type) -> None:
    """Add an action type: jobs that name `kind` hold an `action` (a frozen dataclass with a
    `kind` and a `retry`, its secrets as `Secret` fields, and, if its attempts may say how long
    they take, a `timeout: Duration | None`)."""
    ACTION_KINDS[kind] = action


def timeout_of(action: SingleAction) -> timedelta | None:
    """How long an attempt of the action may take, if it says; an action type without a
    `timeout` field never does."""
    timeout: Duration | None = getattr(action, "timeout", None)
    return None if timeout is None else timeout.value


def callback_of(action: SingleAction) -> CallbackCompletion | None:
    """How long an attempt of the action waits for its target's callback, if it does."""
    return action.completion if isinstance(action, HttpAction) else None


@dataclass(frozen=True, slots=True)
class Stage:
    """What one attempt runs: an action, the policy its failures are retried by, its
    timeout, and, in a sequence, its step."""

    action: SingleAction
    retry: RetryPolicy
    timeout: timedelta | None = None
    step: int | None = None
    steps: int = 0  # how many steps its sequence has
    pause_on_failure: bool = False
    next_manual: bool = False  # the step after it waits for `resume`


@dataclass(frozen=True)
class JobDefinition:
    """What a job does and when: the engine's view of one version of a job."""

    start: datetime | None
    recurrence: Recurrence | None
    parameters: Mapping[str, Any]
    action: Action
    error_action: SingleAction | None
    catch_up: CatchUp | None = None  # what it does with occurrences missed; None: `latest`
    # What it does with a new run while another is open (`concurrencyPolicy`).
    concurrency_policy: Overlap = Overlap.ALLOW
    # The names of the only engine nodes that run its executions, lower-cased; none: any.
    run_on: tuple[str, ...] = ()
    # Which of its events alert, and through which channels; None: its collection's default.
    alerts: AlertRules | None = None

    def action_named(self, name: str) -> Action | None:
        """The main action (`MainAction`) or the error action (`ErrorAction`)."""
        return self.action if name == MAIN_ACTION else self.error_action

    @cached_property
    def _single_stages(self) -> dict[bool, Stage]:
        """The stages of the main (True) and error (False) actions that are not sequences,
        made once: every attempt asks for one."""
        stages: dict[bool, Stage] = {}
        for is_main, action in ((True, self.action), (False, self.error_action)):
            if action is not None and not isinstance(action, Sequence):
                stages[is_main] = Stage(action, action.retry or DEFAULT_RETRY,
                                        timeout_of(action))
        return stages

    @property
    def starts_waiting(self) -> bool:
        """Whether an execution waits for `resume` before anything runs (a sequence whose
        first step is manual)."""
        action = self.action
        return isinstance(action, Sequence) and bool(action.steps[0].manual)

    def stage(self, name: str, step: int | None) -> Stage | None:
        """What an attempt of the named action runs: the action itself, or, for a
        sequence, its step number `step`; None if there is no such action or step."""
        action = self.action_named(name)
        if action is None:
            return None
        if not isinstance(action, Sequence):
            return self._single_stages[name == MAIN_ACTION]
        index = step or 0
        if not 0 <= index < len(action.steps):
            return None
        current = action.steps[index]
        following = action.steps[index + 1] if index + 1 < len(action.steps) else None
        timeout = current.timeout.value if current.timeout else timeout_of(current.action)
        return Stage(current.action, current.policy, timeout, index,
                     len(action.steps), bool(current.pause_on_failure),
                     following is not None and bool(following.manual))
