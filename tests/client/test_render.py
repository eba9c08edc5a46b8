"""What the client prints: tables for people, JSON for scripts."""

from __future__ import annotations

import json

from scheduler.client import render

JOB = {
    "id": "ping", "startTime": "2030-01-01T00:00:00Z", "state": "enabled",
    "action": {"type": "http", "request": {"method": "GET", "uri": "http://127.0.0.1/ping"},
               "retryPolicy": {"retryType": "fixed", "retryCount": 2, "retryInterval": "PT1M"}},
    "recurrence": {"frequency": "hour", "interval": 6},
    "status": {"nextExecutionTime": "2030-01-01T00:00:00Z", "executionCount": 3,
               "failureCount": 1, "faultedCount": 0},
}


def test_a_table_aligns_columns_under_their_headers() -> None:
    text = render.table(("ID", "STATE"), [("a-long-id", "enabled"), ("b", None)])
    assert text.splitlines() == ["ID         STATE", "a-long-id  enabled", "b          -"]


def test_a_table_without_rows_is_its_header() -> None:
    assert render.table(("ID", "STATE"), []) == "ID  STATE"


def test_a_cell_is_one_line() -> None:
    assert render.cell("two\nlines") == "two lines"
    assert render.cell(["monday", "friday"]) == "monday,friday"
    assert render.cell(False) == "false"


def test_fields_align_their_values() -> None:
    assert render.fields([("id", "x"), ("state", "on")]).splitlines() == [
        "id:     x", "state:  on"]


def test_recurrence_reads_as_words() -> None:
    assert render.recurrence_text(None) == "once"
    assert render.recurrence_text({"frequency": "minute", "interval": 1}) == "every 1 minute"
    assert render.recurrence_text({
        "frequency": "week", "interval": 2, "count": 5, "endTime": "2031-01-01T00:00:00Z",
        "schedule": {"weekDays": ["monday", "friday"], "hours": [9], "minutes": [0, 30]},
    }) == ("every 2 weeks; weekDays monday,friday; hours 9; minutes 0,30; 5 times; "
           "until 2031-01-01T00:00:00Z")
    assert render.recurrence_text({"frequency": "month", "schedule": {
        "monthlyOccurrences": [{"day": "friday", "occurrence": -1}]}}) == \
        "every 1 month; -1 friday"
    assert render.recurrence_text({"cron": "0 9 * * MON-FRI", "jitter": "PT5M", "count": 3}
                                  ) == "cron 0 9 * * MON-FRI; 3 times; jitter PT5M"


def test_the_jobs_table_shows_state_schedule_and_counts() -> None:
    lines = render.jobs_table([JOB]).splitlines()
    assert lines[0].split() == ["ID", "STATE", "ACTION", "RECURRENCE", "NEXT", "RUN", "LAST",
                                "RUN", "RUNS/FAILED"]
    assert lines[1].split() == ["ping", "enabled", "http", "every", "6", "hours",
                                "2030-01-01T00:00:00Z", "-", "3/1"]


def test_a_job_shows_its_target_and_retry_policy() -> None:
    text = render.job_fields(JOB)
    assert "target:        GET http://127.0.0.1/ping" in text
    assert "retry:         fixed 2 PT1M" in text
    assert "executions:    3" in text


def test_a_queue_action_shows_its_queue() -> None:
    action = {"type": "storageQueue", "queueMessage": {"queueName": "orders"}}
    assert render.target_text(action) == "orders"


def test_history_messages_are_cut_for_the_table() -> None:
    entry = {"startTime": "2030-01-01T00:00:00Z", "status": "failed",
             "actionName": "MainAction", "retryCount": 0, "message": "x" * 500}
    row = render.history_table([entry]).splitlines()[1]
    assert row.endswith("x" * (render.MESSAGE_WIDTH - 3) + "...")


def test_an_execution_shows_the_answer_it_got() -> None:
    text = render.execution_fields({"id": "e1", "jobId": "ping", "status": "completed",
                                    "outputParameters": {"statusCode": 200,
                                                         "reasonPhrase": "OK"}})
    assert "answer:     200 OK" in text


def test_collections_show_their_limits() -> None:
    collection = {"cloudService": "cs1", "name": "jc1", "plan": "Standard",
                  "state": "Started", "region": "West Europe", "maxJobCount": 50,
                  "maxRecurrence": {"frequency": "Minute", "interval": 1}}
    assert render.collections_table([collection]).splitlines()[1].split() == [
        "cs1", "jc1", "Standard", "Started", "West", "Europe", "50", "1", "minute"]


def test_json_output_is_the_document() -> None:
    assert json.loads(render.as_json([JOB])) == [JOB]


# --- text written by others reaches the terminal escaped ------------------------------------

HOSTILE_TEXT = "red \x1b[31mRED\x1b[0m bell\x07 back\rover del\x7f csi\x9b2J nul\x00"


def test_control_characters_are_shown_escaped() -> None:
    assert render.escape_controls(HOSTILE_TEXT) == (
        "red \\x1b[31mRED\\x1b[0m bell\\x07 back\\rover del\\x7f csi\\x9b2J nul\\x00")
    assert render.escape_controls("a\tb\nc") == "a\\tb\\nc"
    assert render.escape_controls("a\tb\nc", keep="\n") == "a\\tb\nc"


def test_a_cell_escapes_control_characters_and_keeps_to_one_line() -> None:
    text = render.cell(HOSTILE_TEXT + "\r\nnext line\ttab")
    assert text.endswith("nul\\x00 next line tab")
    assert "\\x1b[31mRED" in text and "back\\rover" in text
    assert not any(ord(char) < 0x20 or 0x7f <= ord(char) <= 0x9f for char in text)


def test_a_history_table_shows_a_targets_escape_sequences_escaped() -> None:
    entry = {"startTime": "2030-01-01T00:00:00Z", "status": "failed",
             "actionName": "MainAction\x1b]0;title\x07", "retryCount": 0,
             "message": "Http Action - Response from host 'h': '200 \x1b[31mRED' Body: \x9b2J"}
    text = render.history_table([entry])
    assert "'200 \\x1b[31mRED' Body: \\x9b2J" in text
    assert "MainAction\\x1b]0;title\\x07" in text
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text


def test_a_cut_message_never_ends_inside_an_escape() -> None:
    entry = {"status": "failed", "message": "x" * (render.MESSAGE_WIDTH - 5) + "\x1b[31m"}
    message = render.history_table([entry]).splitlines()[1].split()[-1]
    assert message == "x" * (render.MESSAGE_WIDTH - 5) + "..."


def test_fields_escape_what_a_job_author_wrote() -> None:
    job = {**JOB, "action": {"type": "http", "request": {
        "method": "GET", "uri": "http://h/\x1b[2J"}}}
    text = render.job_fields(job)
    assert "target:        GET http://h/\\x1b[2J" in text and "\x1b" not in text


def test_json_output_escapes_every_control_character_and_reads_back() -> None:
    document = {"message": HOSTILE_TEXT, "steps": [{"name": "\u0085next"}]}
    text = render.as_json(document)
    assert not any((ord(char) < 0x20 and char != "\n") or 0x7f <= ord(char) <= 0x9f
                   for char in text)
    assert "\\u009b2J" in text and "\\u001b[31m" in text and "\\u0085next" in text
    assert json.loads(text) == document


# --- sequences ---------------------------------------------------------------------------------

PAUSED = {"id": "e1", "jobId": "release", "status": "paused", "currentStep": 1,
          "steps": [{"name": "prepare", "status": "completed"},
                    {"name": "deploy", "status": "waiting"}]}


def test_an_execution_of_a_sequence_shows_the_step_it_stands_at() -> None:
    assert "step:       2 of 2: deploy (waiting)" in render.execution_fields(PAUSED)
    assert render.paused_step(PAUSED) == "deploy"
    assert render.paused_step({"status": "paused"}) is None


# --- executions, history entries of executions, certificates --------------------------------

def test_a_history_table_shows_each_attempts_execution_and_step_when_told() -> None:
    plain = {"startTime": "2030-01-01T00:00:00Z", "status": "completed",
             "actionName": "MainAction", "retryCount": 0, "message": "ok"}
    assert render.history_table([plain]).splitlines()[0].split() == [
        "TIME", "STATUS", "ACTION", "RETRY", "MESSAGE"]
    stepped = {**plain, "executionId": "01a24ae686c77092af8cfc6093f6ca9a",
               "stepName": "deploy", "status": "canceled"}
    lines = render.history_table([stepped, plain]).splitlines()
    assert lines[0].split() == ["TIME", "STATUS", "ACTION", "RETRY", "EXECUTION", "STEP",
                                "MESSAGE"]
    assert lines[1].split() == ["2030-01-01T00:00:00Z", "canceled", "MainAction", "0",
                                "93f6ca9a", "deploy", "ok"]
    assert lines[2].split() == ["2030-01-01T00:00:00Z", "completed", "MainAction", "0",
                                "-", "-", "ok"]


def test_the_executions_table_shows_full_ids_and_inline_runs() -> None:
    lines = render.executions_table([
        {"id": "a" * 32, "jobId": None, "trigger": "manual", "status": "failed",
         "scheduledTime": "2030-01-01T00:00:00Z", "endTime": "2030-01-01T00:00:01Z",
         "attempts": 1, "message": "boom"},
        PAUSED]).splitlines()
    assert lines[1].split() == ["a" * 32, "(inline)", "manual", "failed",
                                "2030-01-01T00:00:00Z", "2030-01-01T00:00:01Z", "1", "boom"]
    assert lines[2].split()[:3] == ["e1", "release", "-"]
    assert lines[2].endswith("2 of 2: deploy (waiting)")


def test_an_execution_shows_its_steps_and_no_answer_it_never_got() -> None:
    text = render.execution_details({**PAUSED, "outputParameters": {"statusCode": None}})
    assert "answer:" not in text
    assert text.splitlines()[-2].split() == ["1", "prepare", "completed", "-", "-", "-"]
    assert text.splitlines()[-1].split() == ["2", "deploy", "waiting", "-", "-", "-"]


def test_certificates_show_subject_and_validity() -> None:
    lines = render.certificates_table([{
        "thumbprint": "AB" * 20, "subject": "CN=ops", "notAfter": "2031-01-01T00:00:00Z",
        "created": "2030-01-01T00:00:00Z"}]).splitlines()
    assert lines[0].split() == ["THUMBPRINT", "SUBJECT", "NOT", "AFTER", "REGISTERED"]
    assert lines[1].split() == ["AB" * 20, "CN=ops", "2031-01-01T00:00:00Z",
                                "2030-01-01T00:00:00Z"]


def test_a_job_lists_the_scheduling_policies_it_sets_and_no_other() -> None:
    job = {**JOB, "concurrencyPolicy": "replace", "catchUp": {"policy": "none"},
           "recurrence": {"frequency": "hour", "excludeCalendars": ["holidays", "weekends"]},
           "action": {"type": "sequence", "steps": [
               {"name": "build", "timeout": "PT5M", "action": {"type": "http"}},
               {"name": "ship", "action": {"type": "http", "request": {"timeout": "PT1M"}}},
               {"name": "tell", "action": {"type": "http", "request": {}}}]}}
    text = render.job_fields(job)
    assert "concurrency:         replace" in text
    assert "catch-up:            none" in text
    assert "excluded calendars:  holidays,weekends" in text
    assert "timeout:             build PT5M, ship PT1M" in text
    queue = {**JOB, "action": {"type": "storageQueue",
                               "queueMessage": {"queueName": "q", "timeout": "PT10S"}}}
    assert "timeout:       PT10S" in render.job_fields(queue)
    plain = render.job_fields(JOB)
    assert not any(line.startswith(("concurrency", "catch-up", "excluded", "timeout"))
                   for line in plain.splitlines())


def test_a_backfill_lists_its_runs_and_what_it_left_out() -> None:
    made = {"executions": [{"id": "a" * 32, "scheduledTime": "2020-01-01T00:00:00Z",
                            "status": "pending"},
                           {"id": "b" * 32, "scheduledTime": "2020-01-01T01:00:00Z",
                            "status": "waiting"}],
            "leftOut": {"ranAlready": 2, "excluded": 1}}
    assert render.backfill_text(made).splitlines() == [
        "ID                                SCHEDULED             STATUS",
        f"{'a' * 32}  2020-01-01T00:00:00Z  pending",
        f"{'b' * 32}  2020-01-01T01:00:00Z  waiting",
        "2 runs made; left out: 2 that ran already, 1 excluded by a calendar"]
    assert render.backfill_text({"executions": [], "leftOut": {"ranAlready": 1}}) == \
        "0 runs made; left out: 1 that ran already, 0 excluded by a calendar"


def test_a_job_says_how_its_outcome_comes() -> None:
    waits = {"action": {"type": "http", "request": {"uri": "https://x", "method": "POST"},
                        "completion": {"mode": "callback", "timeout": "PT1H"}}}
    assert "completion:    callback within PT1H" in render.job_fields(waits)
    answers = {"action": {"type": "http", "request": {"uri": "https://x", "method": "GET"}}}
    assert "completion:    sync" in render.job_fields(answers)
