"""The wire documents of the API and their rules."""

# The job document's module registers the action types this version has with the job codec,
# so that any use of the codec finds them.
from scheduler.api.schemas import jobs as jobs
