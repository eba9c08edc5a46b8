"""Every page of the dashboard is plain semantic HTML: one `main` and one `h1`, each form
control with a label a screen reader reads out, each button with words, each table with a
header row."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant
from tests.ui.markup import Element, collection_ui, page, ui

PAGES = ("overview", "jobs", "collection jobs", "job", "execution", "audit",
         "collection audit", "collection alerts", "engine", "collections", "certificates")


def labelled(control: Element, root: Element) -> bool:
    """Whether a form control has a label: one around it, one naming its id, or an ARIA
    label."""
    if control.attrs.get("aria-label") or control.attrs.get("aria-labelledby"):
        return True
    control_id = control.attrs.get("id")
    if control_id and root.find_all("label", where=lambda label:
                                    label.attrs.get("for") == control_id):
        return True
    return any(control in label.elements() for label in root.find_all("label"))


@pytest.fixture
def paths(signed_in: FlaskClient, collection: Tenant, receiver: Receiver,
          driver: NodeDriver) -> dict[str, str]:
    """The path of each page, with a job that ran once and a notification channel to
    show."""
    assert collection.call("PUT", JOBS.rsplit("/", 1)[0] + "/notificationChannels/ops", {
        "type": "webhook", "url": receiver.url("/alerts")}).status_code == 201
    assert collection.call("PUT", f"{JOBS}/ran", receiver.job(
        startTime="2099-01-01T00:00:00Z",
        alerts={"on": ["failed"], "channels": ["ops"]})).status_code == 201
    execution = collection.call("POST", f"{JOBS}/ran/run").get_json()["id"]
    driver.step()
    sub = collection.subscription_id
    return {"overview": ui(sub), "jobs": ui(sub, "/jobs"),
            "collection jobs": collection_ui(sub, "/jobs"),
            "job": collection_ui(sub, "/jobs/ran"),
            "execution": collection_ui(sub, f"/jobs/ran/executions/{execution}"),
            "audit": ui(sub, "/audit"), "collection audit": collection_ui(sub, "/audit"),
            "collection alerts": collection_ui(sub, "/alerts"),
            "engine": ui(sub, "/engine"), "collections": ui(sub, "/collections"),
            "certificates": ui(sub, "/certificates")}


@pytest.mark.parametrize("name", PAGES)
def test_every_page_is_semantic_html_with_labelled_controls(
    signed_in: FlaskClient, paths: dict[str, str], name: str
) -> None:
    root = page(signed_in, paths[name])
    assert len(root.find_all("main")) == 1 and len(root.find_all("h1")) == 1
    assert root.find_all("html")[0].attrs.get("lang") == "en"
    controls = [control for control in root.find_all()
                if control.tag in ("select", "textarea")
                or (control.tag == "input" and control.attrs.get("type") != "hidden")]
    unlabelled = [control.attrs for control in controls if not labelled(control, root)]
    assert unlabelled == [], f"{name}: controls without a label"
    silent = [button.attrs for button in root.find_all("button")
              if not button.text and not button.attrs.get("aria-label")]
    assert silent == [], f"{name}: buttons without words"
    for table in root.find_all("table"):
        assert table.find_all("th"), f"{name}: a table without header cells"
