"""Parsing Taskcluster queue messages: pure, message in, event or Skip out."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta

import pytest
import taskcluster

from releng_hardware.core import events
from releng_hardware.core.events import (EXCHANGE_PREFIX, PendingEvent, Skip, WorkerEvent, bindings,
                                    machine_lastseen, parse_message, resolved_by_queue)
from tests.conftest import NOW, queue_message


def parse(message: dict, received_at: datetime = NOW, body=None, **kwargs):
    raw = json.dumps(message["body"]).encode() if body is None else body
    return parse_message(message["exchange"], message["routing_key"], raw, received_at, **kwargs)


def test_bindings_match_the_official_taskcluster_client():
    events = taskcluster.QueueEvents({"rootUrl": "https://firefox-ci-tc.services.mozilla.com"})
    expected = []
    for provisioner in ("releng-hardware", "other-hw"):
        for topic in (events.taskPending, events.taskRunning, events.taskCompleted,
                      events.taskFailed, events.taskException):
            binding = topic({"provisionerId": provisioner})
            expected.append((binding["exchange"], binding["routingKeyPattern"]))
    assert bindings(["releng-hardware", "other-hw"]) == expected


def test_running_message_gives_the_run_start_as_lastseen():
    event = parse(queue_message("task-running"))
    assert event == WorkerEvent(
        worker_group="mdc1", worker_id="t-linux64-ms-100", provisioner_id="releng-hardware",
        worker_type="gecko-t-linux-talos", task_id="U_F3XNKtSY6K0rVkx-UBig", run_id=0,
        state="running", reason_resolved=None, lastseen=datetime(2026, 11, 20, 14, 11, 48, 305000),
        deadline=datetime(2026, 11, 21, 14, 8, 55, 690000), time_from_message=True,
        started=datetime(2026, 11, 20, 14, 11, 48, 305000),
        event_time=datetime(2026, 11, 20, 14, 11, 48, 305000))
    assert event.machine_id == "mdc1:t-linux64-ms-100"


@pytest.mark.parametrize("name, state, reason", [
    ("task-completed", "completed", "completed"),
    ("task-failed-retry-run", "failed", "failed"),
    ("task-exception-worker-shutdown", "exception", "worker-shutdown"),
])
def test_resolutions_give_the_run_resolution_time(name, state, reason):
    message = queue_message(name)
    event = parse(message)
    run = message["body"]["status"]["runs"][message["body"]["runId"]]
    assert isinstance(event, WorkerEvent)
    assert (event.state, event.reason_resolved) == (state, reason)
    assert event.lastseen == event.event_time == datetime.fromisoformat(run["resolved"].replace("Z", ""))
    assert event.time_from_message


@pytest.mark.parametrize("name, reason", [
    ("task-exception-claim-expired", "claim-expired"),
    ("task-exception-canceled", "canceled"),
])
def test_queue_resolutions_give_the_machine_s_last_claim(name, reason):
    message = queue_message(name)
    event = parse(message)
    run = message["body"]["status"]["runs"][message["body"]["runId"]]
    assert (event.state, event.reason_resolved) == ("exception", reason)
    # the worker last claimed it when it started: takenUntil is started + the claim timeout
    assert event.lastseen == event.started == datetime.fromisoformat(run["started"].replace("Z", ""))
    assert event.event_time == datetime.fromisoformat(run["resolved"].replace("Z", ""))


def test_retry_run_reads_the_run_named_by_run_id_not_the_first():
    event = parse(queue_message("task-failed-retry-run"))
    assert event.run_id == 1 and event.lastseen == datetime(2026, 11, 20, 14, 9, 20, 664000)
    assert event.machine_id == "mdc1:t-linux64-ms-100"  # run 0 ran on t-linux64-ms-117


def test_exception_before_any_run_has_no_worker_and_is_skipped():
    assert parse(queue_message("task-exception-deadline-no-worker")) == Skip(
        "no-worker", detail="cZx-Lek4Rc64ChmCMiVU9g")


def test_worker_falls_back_to_the_run_then_the_routing_key():
    message = queue_message("task-completed")
    del message["body"]["workerGroup"], message["body"]["workerId"]
    assert parse(message).machine_id == "mdc2:t-w1064-ms-281"
    for key in ("workerGroup", "workerId"):
        del message["body"]["status"]["runs"][0][key]
    assert parse(message).machine_id == "mdc2:t-w1064-ms-281"


def test_every_field_the_body_lacks_comes_from_the_routing_key():
    message = queue_message("task-completed")
    body, status = message["body"], message["body"]["status"]
    for key in ("taskId", "provisionerId", "workerType", "taskQueueId"):
        del status[key]
    del body["runId"], body["workerGroup"], body["workerId"]
    status["taskId"] = ""  # empty counts as absent, like a missing field
    for key in ("workerGroup", "workerId"):
        del status["runs"][0][key]
    event = parse(message)
    assert (event.task_id, event.run_id, event.machine_id, event.provisioner_id, event.worker_type) == (
        "Kjs1q7JGTtqsH-tTnF9iHQ", 0, "mdc2:t-w1064-ms-281", "releng-hardware", "gecko-t-win10-64-hw")
    # '_' is how the queue writes an absent field into a routing key
    message["routing_key"] = message["routing_key"].replace(".t-w1064-ms-281.", "._.")
    assert parse(message) == Skip("no-worker", detail="Kjs1q7JGTtqsH-tTnF9iHQ")
    # a routing key not of the queue's form names nothing
    message["routing_key"] = "secondary" + message["routing_key"][len("primary"):]
    assert parse(message) == Skip("bad-identifier", malformed=True, detail="provisionerId None")


def test_receipt_time_is_used_only_when_the_message_has_no_time():
    message = queue_message("task-running")
    del message["body"]["status"]["runs"][0]["started"]
    event = parse(message, received_at=NOW)
    assert event.lastseen == NOW and not event.time_from_message


def test_task_queue_id_stands_in_for_provisioner_and_worker_type():
    message = queue_message("task-running")
    del message["body"]["status"]["provisionerId"], message["body"]["status"]["workerType"]
    message["routing_key"] = "primary.x"
    event = parse(message)
    assert (event.provisioner_id, event.worker_type) == ("releng-hardware", "gecko-t-linux-talos")


def test_other_provisioners_are_skipped_but_not_malformed():
    outcome = parse(queue_message("task-running"), provisioner_ids=("someone-else",))
    assert outcome == Skip("other-provisioner", detail="releng-hardware")


def test_pending_message_gives_a_pending_event_with_deadline():
    message = queue_message("task-running")
    message["exchange"] = EXCHANGE_PREFIX + "task-pending"
    run = message["body"]["status"]["runs"][0]
    for key in ("workerGroup", "workerId", "started", "takenUntil"):
        run.pop(key)
    event = parse(message)
    assert event == PendingEvent("releng-hardware", "gecko-t-linux-talos", "U_F3XNKtSY6K0rVkx-UBig", 0,
                                 datetime(2026, 11, 20, 14, 9, 2, 117000),
                                 datetime(2026, 11, 21, 14, 8, 55, 690000))


def broken(mutate) -> dict:
    message = copy.deepcopy(queue_message("task-completed"))
    mutate(message["body"])
    return message


@pytest.mark.parametrize("body, reason", [
    (b"\xff\xfe{", "not-json"),
    (b"[1, 2]", "not-an-object"),
    (b"\"text\"", "not-an-object"),
    (b"{" + b" " * (300 * 1024) + b"}", "too-large"),
    (b"{}", "missing-field"),
])
def test_undecodable_bodies_are_malformed(body, reason):
    outcome = parse(queue_message("task-completed"), body=body)
    assert isinstance(outcome, Skip) and outcome.malformed and outcome.reason == reason


@pytest.mark.parametrize("mutate, reason", [
    (lambda body: body.update(runId=5), "bad-run-id"),
    (lambda body: body.update(runId=-1), "bad-run-id"),
    (lambda body: body.update(runId="0"), "bad-run-id"),
    (lambda body: body.update(runId=True), "bad-run-id"),
    (lambda body: body["status"].update(runs="nope"), "missing-field"),
    (lambda body: body["status"]["runs"][0].update(resolved="yesterday"), "bad-time"),
    (lambda body: body["status"]["runs"][0].update(resolved=12), "bad-time"),
    (lambda body: body["status"].update(deadline="2026-13-40T00:00:00Z"), "bad-time"),
    (lambda body: body.update(workerId="bad host!"), "bad-identifier"),
    (lambda body: body.update(workerGroup="x" * 39), "bad-identifier"),
    (lambda body: body.update(workerId=["list"]), "bad-identifier"),
    (lambda body: body["status"].update(taskId="not-a-slug"), "bad-identifier"),
    (lambda body: body["status"].update(workerType="a.b"), "bad-identifier"),
    (lambda body: body["status"]["runs"][0].update(reasonResolved="<script>"), "bad-field"),
    (lambda body: body["status"]["runs"][0].update(resolved="2026-11-21T14:03:27.512Z"), "future-time"),
])
def test_fields_breaking_the_schema_are_malformed(mutate, reason):
    outcome = parse(broken(mutate), received_at=datetime(2026, 11, 20, 14, 5))
    assert isinstance(outcome, Skip) and outcome.malformed and outcome.reason == reason
    assert len(outcome.detail) <= 120


def test_small_clock_skew_is_accepted():
    message = queue_message("task-completed")
    resolved = datetime.fromisoformat(message["body"]["status"]["runs"][0]["resolved"].replace("Z", ""))
    event = parse(message, received_at=resolved - timedelta(minutes=30))
    assert isinstance(event, WorkerEvent) and event.lastseen == resolved


def test_unknown_exchange_is_skipped_not_malformed():
    outcome = parse_message("exchange/other/v1/thing", "primary.x", b"{}", NOW)
    assert outcome == Skip("unknown-exchange", detail="exchange/other/v1/thing")


def test_a_dict_body_is_accepted_as_already_decoded():
    message = queue_message("task-completed")
    assert parse(message, body=message["body"]) == parse(message)


@pytest.mark.parametrize("content_type, accepted", [
    (None, True), ("application/json", True), ("application/json; charset=utf-8", True),
    ("text/plain", False), ("application/x-python-serialize", False),
])
def test_only_json_content_is_accepted(content_type, accepted):
    outcome = parse(queue_message("task-completed"), content_type=content_type)
    assert isinstance(outcome, WorkerEvent) is accepted
    if not accepted:
        assert outcome == Skip("wrong-content-type", malformed=True, detail=content_type)


@pytest.mark.parametrize("field, value", [("taskId", "AAAAAAAAQAGAAAAAAAAAAA\n"),
                                          ("workerId", "t-linux64-ms-100\n"),
                                          ("reasonResolved", "completed\n")])
def test_identifiers_with_a_trailing_newline_are_malformed(field, value):
    body = {"status": {"taskId": "AAAAAAAAQAGAAAAAAAAAAA", "provisionerId": "releng-hardware",
                       "workerType": "gecko-t-linux-talos", "deadline": "2026-11-21T15:00:00.000Z",
                       "runs": [{"runId": 0, "state": "completed", "reasonResolved": "completed",
                                 "workerGroup": "mdc1", "workerId": "t-linux64-ms-100",
                                 "started": "2026-11-20T14:00:00.000Z",
                                 "resolved": "2026-11-20T14:30:00.000Z"}]},
            "runId": 0, "workerGroup": "mdc1", "workerId": "t-linux64-ms-100"}
    if field == "taskId":
        body["status"]["taskId"] = value
    elif field == "workerId":
        body["workerId"] = value
    else:
        body["status"]["runs"][0]["reasonResolved"] = value
    outcome = parse_message("exchange/taskcluster-queue/v1/task-completed", "", body,
                            datetime(2026, 11, 20, 15, 0))
    assert isinstance(outcome, Skip) and outcome.malformed, outcome


def test_an_identifier_accepted_once_leaves_the_rule_for_others(monkeypatch):
    # the listener remembers the identifiers it accepted: a bad one is refused every time
    # and a good one every time, however many of them came before
    monkeypatch.setattr(events, "_known_identifiers", set())
    monkeypatch.setattr(events, "KNOWN_IDENTIFIERS_MAX", 3)
    good, bad = queue_message("task-completed"), queue_message("task-completed")
    bad["body"]["status"]["workerType"] = "gecko t linux"
    for _ in range(2):
        assert isinstance(parse(good), WorkerEvent)
        outcome = parse(bad)
        assert isinstance(outcome, Skip) and outcome.reason == "bad-identifier", outcome
    assert len(events._known_identifiers) <= 3
    other = queue_message("task-completed")
    other["body"]["workerId"] = other["body"]["status"]["runs"][0]["workerId"] = "t-other-1"
    assert parse(other).worker_id == "t-other-1"
    assert len(events._known_identifiers) <= 3


# -- lastseen of runs the queue resolved itself ---------------------------------

STARTED = datetime(2026, 11, 20, 10, 0, 0)
RESOLVED = datetime(2026, 11, 20, 12, 0, 0)
CLAIM_TIMEOUT = timedelta(minutes=20)


def test_queue_resolved_run_was_last_alive_at_its_last_claim():
    taken_until = datetime(2026, 11, 20, 11, 40, 0)
    assert machine_lastseen(RESOLVED, STARTED, taken_until, CLAIM_TIMEOUT) == datetime(2026, 11, 20, 11, 20)


def test_queue_resolved_run_never_claimed_again_was_last_alive_at_its_start():
    taken_until = STARTED + timedelta(minutes=10)
    assert machine_lastseen(RESOLVED, STARTED, taken_until, CLAIM_TIMEOUT) == STARTED


def test_queue_resolved_run_is_never_seen_after_its_resolution():
    taken_until = RESOLVED + timedelta(hours=1)
    assert machine_lastseen(RESOLVED, None, taken_until, CLAIM_TIMEOUT) == RESOLVED
    assert machine_lastseen(RESOLVED, RESOLVED + timedelta(minutes=1), None, CLAIM_TIMEOUT) == RESOLVED


def test_queue_resolved_run_with_one_of_the_two_times_uses_it():
    assert machine_lastseen(RESOLVED, STARTED, None, CLAIM_TIMEOUT) == STARTED
    assert machine_lastseen(RESOLVED, None, RESOLVED, CLAIM_TIMEOUT) == RESOLVED - CLAIM_TIMEOUT


def test_queue_resolved_run_with_neither_time_keeps_its_resolution_time():
    assert machine_lastseen(RESOLVED, None, None, CLAIM_TIMEOUT) == RESOLVED


@pytest.mark.parametrize("state, reason, by_queue", [
    ("running", None, False),
    ("completed", "completed", False),
    ("failed", "failed", False),
    ("exception", "worker-shutdown", False),
    ("exception", "malformed-payload", False),
    ("exception", "resource-unavailable", False),
    ("exception", "internal-error", False),
    ("exception", "intermittent-task", False),
    ("exception", "claim-expired", True),
    ("exception", "deadline-exceeded", True),
    ("exception", "canceled", True),
    ("exception", "superseded", True),
    ("exception", "something-new", True),
    ("exception", None, True),
])
def test_which_runs_the_queue_resolved_itself(state, reason, by_queue):
    assert resolved_by_queue(state, reason) is by_queue


def _exception_message(reason: str, *, started: str | None, taken_until: str | None) -> dict:
    run = {"runId": 0, "state": "exception", "reasonCreated": "scheduled", "reasonResolved": reason,
           "workerGroup": "mdc1", "workerId": "t-linux64-ms-100",
           "scheduled": "2026-11-20T09:59:00.000Z", "resolved": "2026-11-20T12:00:00.000Z"}
    for name, value in (("started", started), ("takenUntil", taken_until)):
        if value is not None:
            run[name] = value
    task_id = "ObxhT37dTDeH5B_2VxCHbg"
    status = {"taskId": task_id, "provisionerId": "releng-hardware", "workerType": "gecko-t-linux-talos",
              "deadline": "2026-11-21T09:59:00.000Z", "state": "exception", "runs": [run]}
    return {"exchange": EXCHANGE_PREFIX + "task-exception",
            "routing_key": f"primary.{task_id}.0.mdc1.t-linux64-ms-100.releng-hardware."
                           "gecko-t-linux-talos.gecko-level-3.ObxhT37dTDeH5B_2VxCHbg._",
            "body": {"version": 1, "status": status, "runId": 0,
                     "workerGroup": "mdc1", "workerId": "t-linux64-ms-100"}}


@pytest.mark.parametrize("reason", ["claim-expired", "canceled"])
def test_parsed_queue_resolution_takes_lastseen_from_the_last_claim(reason):
    message = _exception_message(reason, started="2026-11-20T10:00:00.000Z",
                                 taken_until="2026-11-20T11:40:00.000Z")
    event = parse(message, claim_timeout=CLAIM_TIMEOUT)
    assert event.lastseen == datetime(2026, 11, 20, 11, 20)
    assert (event.event_time, event.started) == (RESOLVED, STARTED)


def test_parsed_queue_resolution_follows_the_claim_timeout_setting():
    message = _exception_message("claim-expired", started="2026-11-20T10:00:00.000Z",
                                 taken_until="2026-11-20T11:40:00.000Z")
    assert parse(message, claim_timeout=timedelta(minutes=5)).lastseen == datetime(2026, 11, 20, 11, 35)


def test_parsed_worker_exception_keeps_its_resolution_time():
    message = _exception_message("worker-shutdown", started="2026-11-20T10:00:00.000Z",
                                 taken_until="2026-11-20T11:40:00.000Z")
    assert parse(message).lastseen == RESOLVED


def test_parsed_queue_resolution_without_start_or_claim_keeps_its_resolution_time():
    message = _exception_message("claim-expired", started=None, taken_until=None)
    event = parse(message)
    assert (event.lastseen, event.started) == (RESOLVED, None)


def test_unreadable_taken_until_of_a_queue_resolution_is_malformed():
    message = _exception_message("claim-expired", started=None, taken_until="soon")
    assert parse(message) == Skip("bad-time", malformed=True, detail="takenUntil 'soon'")


@pytest.mark.parametrize("run_id", ["²", "٣", "-1", "1x"])
def test_a_routing_key_run_id_that_is_not_a_plain_number_is_a_bad_run_id(run_id):
    message = queue_message("task-completed")
    del message["body"]["runId"]
    parts = message["routing_key"].split(".")
    parts[2] = run_id
    message["routing_key"] = ".".join(parts)
    assert parse(message) == Skip("bad-run-id", malformed=True, detail=f"runId {run_id!r}")


def test_a_run_s_label_is_its_task_s_tags_label():
    event = parse(queue_message("task-failed-retry-run"))
    assert event.label == "test-linux1804-64-shippable/opt-talos-tp5o"


def test_old_schema_messages_and_tasks_without_the_tag_have_no_label():
    assert parse(queue_message("task-running")).label is None  # no `task` at all
    assert parse(queue_message("task-exception-claim-expired")).label is None  # tags, no label


@pytest.mark.parametrize("task", [
    "not-an-object", {"tags": "not-an-object"}, {"tags": {"label": 7}}, {"tags": {"label": ""}},
    {"tags": {"label": "x" * 256}}, {"tags": {"label": "a\nb"}}, {"tags": {"label": "a\x00b"}},
    {"tags": {"label": "a\x85b"}}, {"tags": None},
])
def test_a_bad_label_is_no_label_and_not_malformed(task):
    message = queue_message("task-completed")
    message["body"]["task"] = task
    event = parse(message)
    assert isinstance(event, WorkerEvent) and event.label is None


def test_the_longest_label_kept_is_255_characters():
    message = queue_message("task-completed")
    message["body"]["task"] = {"tags": {"label": "é" * 255}}
    assert parse(message).label == "é" * 255
