"""Names in the calls and messages the service sends: the identification headers it sets on
each of them (which no job may set, in any letter case), and the Service Bus names a job may
give (which must name a namespace and an entity, never another host or path)."""

from __future__ import annotations

import re

EXECUTION_TAG = "x-ms-execution-tag"
CLIENT_REQUEST_ID = "x-ms-client-request-id"
JOB_ID = "x-ms-scheduler-jobid"
COLLECTION_ID = "x-ms-scheduler-jobcollectionid"
EXPECTED_EXECUTION_TIME = "x-ms-scheduler-expected-execution-time"
# The headers (Service Bus custom properties, AMQP headers) the service sets on every call.
IDENTIFICATION_HEADERS = frozenset({
    EXECUTION_TAG, CLIENT_REQUEST_ID, JOB_ID, COLLECTION_ID, EXPECTED_EXECUTION_TIME})
# Reserved as a whole: the service may add a name of Azure Scheduler's here at any time.
SCHEDULER_PREFIX = "x-ms-scheduler-"
# The headers of a Service Bus Send Message that the service writes: a custom property (sent
# as a header) of one of these names would replace it.
SEND_MESSAGE_HEADERS = frozenset({"brokerproperties", "content-type", "authorization"})
# A job's brokered properties (as Azure Scheduler's job documents name them) and the names
# Service Bus's BrokerProperties header gives them; the content type goes in a header.
BROKER_PROPERTY_NAMES = {
    "correlationId": "CorrelationId", "forcePersistence": "ForcePersistence",
    "label": "Label", "messageId": "MessageId", "partitionKey": "PartitionKey",
    "replyTo": "ReplyTo", "replyToSessionId": "ReplyToSessionId",
    "scheduledEnqueueTimeUtc": "ScheduledEnqueueTimeUtc", "sessionId": "SessionId",
    "timeToLive": "TimeToLive", "to": "To", "viaPartitionKey": "ViaPartitionKey",
}

# Service Bus's own rules: a namespace is a DNS label of 6-50 characters starting with a
# letter; a queue or topic path is letters, digits, '.', '-', '_' and '/', up to 260.
NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]", re.ASCII)
ENTITY_PATH = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,258}[A-Za-z0-9])?", re.ASCII)
NAMESPACE_RULE = ("is 6-50 letters, digits and hyphens, starting with a letter and not "
                  "ending with a hyphen")
ENTITY_PATH_RULE = ("is 1-260 letters, digits, '.', '-', '_' and '/', starting and ending "
                    "with a letter or digit, with no empty, '.' or '..' path segment")


def is_identification_header(name: str) -> bool:
    """Whether a header (or custom property) name, in any case, is one the service sets to
    identify an execution: a job giving it would send a second, forged one beside it."""
    lowered = name.lower()
    return lowered in IDENTIFICATION_HEADERS or lowered.startswith(SCHEDULER_PREFIX)


def is_namespace_name(name: str) -> bool:
    """Whether a Service Bus namespace name follows Azure's rule (and so is one DNS label)."""
    return NAMESPACE.fullmatch(name) is not None


def is_entity_path(path: str) -> bool:
    """Whether a queue or topic path follows Service Bus's rule: no character that could end
    the path (`?`, `#`) and no segment that would climb out of it."""
    if ENTITY_PATH.fullmatch(path) is None:
        return False
    return all(segment not in ("", ".", "..") for segment in path.split("/"))
