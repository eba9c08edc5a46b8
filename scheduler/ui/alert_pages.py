"""The dashboard's page of a collection's alerts and notification channels: each channel,
what it does and how its last test message went, with a button that sends one; the
collection's default alert rules; the alerts its jobs made, and where each was delivered."""

from __future__ import annotations

from flask import g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from scheduler.api.runtime import call, read_connection, runtime, snapshot, transaction
from scheduler.services import alerts, dashboard_alerts, notifications
from scheduler.services.calls import record_and_wake
from scheduler.ui.blueprint import bp
from scheduler.ui.pages import COLLECTION, collection_line


@bp.get(COLLECTION + "/alerts")
def collection_alerts(sub: str, cs: str, jc: str) -> str:
    """A collection's channels, its default alert rules and its jobs' latest alerts; after
    a test message, what became of it."""
    line = collection_line(cs, jc)
    conn = read_connection()
    channels = dashboard_alerts.channel_lines(conn, g.subscription_id, line.cloud_service,
                                              line.name)
    tested = request.args.get("tested", "").lower()
    return render_template(
        "alerts.html", collection=line, channels=channels,
        tested=next((channel for channel in channels if channel.name.lower() == tested
                     and channel.last_test is not None), None),
        rules=dashboard_alerts.default_rules(alerts.read_default_rules(
            conn, g.subscription_id, line.cloud_service, line.name)),
        alerts=dashboard_alerts.collection_alerts(conn, g.subscription_id,
                                                  line.cloud_service, line.name))


@bp.post(COLLECTION + "/channels/<channel_name>/test")
def send_test_message(sub: str, cs: str, jc: str, channel_name: str) -> WerkzeugResponse:
    """Send a channel its test message now, as the API's test does; back on the alerts
    page, say whether it was delivered (the audit keeps it)."""
    context = call()
    with snapshot() as session:
        channel, collection = notifications.opened_channel(session, context, cs, jc,
                                                           channel_name)
    # No transaction is open while the message goes out: it may take its whole timeout.
    delivery = notifications.send_test(runtime().notifier, context, collection, channel)
    with transaction() as session:
        notifications.record_test(session, context, cs, jc, channel, delivery)
        record_and_wake(session, context, "channel.test", 200, wake=False)
    # 303: the page that shows the outcome is fetched, and the form is not sent again.
    return redirect(url_for("ui.collection_alerts", sub=g.subscription_id, cs=cs, jc=jc,
                            tested=channel.name), code=303)
