"""The job page marks the upcoming occurrences an exclusion calendar skips."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from tests.support import JOBS, Tenant

HTTPS = "https://localhost"
COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"


def test_a_job_page_marks_the_days_its_calendars_skip(
        signed_in: FlaskClient, collection: Tenant) -> None:
    assert collection.call("PUT", f"{COLLECTION}/calendars/weekends",
                           {"rules": ["FREQ=WEEKLY;BYDAY=SA,SU"]}).status_code == 201
    assert collection.call("PUT", JOBS + "/report", {
        "startTime": "2026-03-02T12:00:00Z",
        "action": {"type": "http", "request": {"uri": "https://example.com/", "method": "GET"}},
        "recurrence": {"frequency": "day", "excludeCalendars": ["weekends"]}}
    ).status_code == 201
    page = signed_in.get(f"/ui/{collection.subscription_id}{COLLECTION}/jobs/report",
                         base_url=HTTPS).get_data(as_text=True)
    table = page.split('class="upcoming"', 1)[1].split("</table>", 1)[0]
    skipped = re.findall(r'<tr class="skipped">(.*?)</tr>', table, re.S)
    assert len(skipped) == 5, "the weekend days from March 2 to 21"
    assert all("weekends excludes this day" in row for row in skipped)
    assert "2026-03-07 12:00:00" in skipped[0]
