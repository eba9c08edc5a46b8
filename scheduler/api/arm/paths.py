"""Where Resource Manager's routes are: under `/subscriptions/{subscription}`."""

from __future__ import annotations

PREFIX = "/subscriptions/"
GROUP = "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Scheduler"
COLLECTIONS = GROUP + "/jobCollections"
COLLECTION = COLLECTIONS + "/<jc>"
JOBS = COLLECTION + "/jobs"
JOB = JOBS + "/<job_id>"
ALL_COLLECTIONS = "/subscriptions/<sub>/providers/Microsoft.Scheduler/jobCollections"
OPERATION = "/subscriptions/<sub>/providers/Microsoft.Scheduler/operations/<operation_id>"


def is_arm_path(path: str) -> bool:
    """Whether a request is for Resource Manager's API."""
    return path.startswith(PREFIX)


def subscription_of_arm_path(path: str) -> str:
    """The subscription an ARM path names: its second segment."""
    return path[len(PREFIX):].split("/", 1)[0]
