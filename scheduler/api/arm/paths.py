"""Where Resource Manager's routes are: under `/subscriptions/{subscription}`."""

from __future__ import annotations

import re

PREFIX = "/subscriptions/"
GROUP = "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Scheduler"
COLLECTIONS = GROUP + "/jobCollections"
COLLECTION = COLLECTIONS + "/<jc>"
JOBS = COLLECTION + "/jobs"
JOB = JOBS + "/<job_id>"
ALL_COLLECTIONS = "/subscriptions/<sub>/providers/Microsoft.Scheduler/jobCollections"
OPERATION = "/subscriptions/<sub>/providers/Microsoft.Scheduler/operations/<operation_id>"
# The service's own OAuth authority, which Resource Manager clients get their tokens from.
OPENID_CONFIGURATION = "/<tenant>/v2.0/.well-known/openid-configuration"
TOKEN = "/<tenant>/oauth2/v2.0/token"
# The two paths above, for any one segment: the route checks the tenant, so that a tenant it
# refuses is answered as OAuth does, not as a request without a certificate.
_TOKEN_PATHS = re.compile(
    r"/[^/]+/(?:v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token)")


def is_arm_path(path: str) -> bool:
    """Whether a request is for Resource Manager's API."""
    return path.startswith(PREFIX)


def subscription_of_arm_path(path: str) -> str:
    """The subscription an ARM path names: its second segment."""
    return path[len(PREFIX):].split("/", 1)[0]


def is_token_path(path: str) -> bool:
    """Whether a path is one of the token endpoint's, which need no client certificate."""
    return _TOKEN_PATHS.fullmatch(path) is not None
