"""Problems and recent tasks through the API: /machines, /machines/<id>, CSV, /summary, /metrics."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.core.problems import PROBLEMS
from releng_hardware.store.machines import Store
from tests.conftest import DEADLINE, NOW, make_config

ROOT = "https://firefox-ci-tc.services.mozilla.com"


def run(store: Store, host: str, number: int, *, minutes_ago: float, state: str = "completed",
        reason: str | None = None, worker_type: str = "gecko-t-linux-talos", dc: str = "mdc1",
        length: float = 10) -> str:
    """Record one run of a machine, started then ended `minutes_ago` (running: started then)."""
    task = f"TASK{number:04d}QAGAAAAAAAAAAA"
    end = NOW - timedelta(minutes=minutes_ago)
    start = end - timedelta(minutes=length) if state != "running" else end
    events = [WorkerEvent(dc, host, "releng-hardware", worker_type, task, 0, "running", None, start,
                          DEADLINE, True, start, start)]
    if state != "running":
        events.append(WorkerEvent(dc, host, "releng-hardware", worker_type, task, 0, state,
                                  reason or state, end, DEADLINE, True, start, end))
    store.record(events, now=NOW)
    return task


@pytest.fixture
def sick_fleet(store):
    """One machine per problem, and a healthy one."""
    for i in range(10):
        run(store, "t-healthy", i, minutes_ago=100 - i * 10)
    for i in range(5):
        run(store, "t-black-hole", 100 + i, minutes_ago=50 - i * 10, state="failed")
    for i, reason in enumerate(("worker-shutdown", "internal-error", "worker-shutdown")):
        run(store, "t-flaky", 200 + 2 * i, minutes_ago=60 - i * 20, state="exception", reason=reason)
        run(store, "t-flaky", 201 + 2 * i, minutes_ago=55 - i * 20)
    run(store, "t-lost", 300, minutes_ago=30, state="exception", reason="claim-expired")
    run(store, "t-hung", 400, minutes_ago=4 * 60, state="running")
    run(store, "t-gone", 500, minutes_ago=7 * 60, worker_type="gecko-t-win10-64-hw")
    store.record([PendingEvent("releng-hardware", "gecko-t-win10-64-hw", "WAITINGAQAGAAAAAAAAAAA", 0,
                               NOW, DEADLINE)], now=NOW)
    return store


def problems_by_id(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.get_json()
    return {machine["id"].split(":")[1]: machine["problems"] for machine in response.get_json()}


# What a sick fleet shows: one machine per problem (the integration test builds the same one).
SICK_FLEET_PROBLEMS = {
    "t-healthy": [],
    "t-black-hole": ["consecutive_failures", "low_success_rate"],
    "t-flaky": ["exceptions"],
    "t-lost": ["lost_mid_task"],
    "t-hung": ["hung_task"],
    "t-gone": ["idle_with_work_waiting", "stale"],
}


def test_every_machine_carries_its_problems(client, sick_fleet):
    assert problems_by_id(client.get("/machines")) == SICK_FLEET_PROBLEMS


def test_problem_filter_selects_machines_with_that_problem_or_any(client, sick_fleet):
    assert list(problems_by_id(client.get("/machines?problem=hung_task"))) == ["t-hung"]
    assert list(problems_by_id(client.get("/machines?problem=consecutive_failures"))) == ["t-black-hole"]
    assert sorted(problems_by_id(client.get("/machines?problem=any"))) == [
        "t-black-hole", "t-flaky", "t-gone", "t-hung", "t-lost"]
    assert problems_by_id(client.get("/machines?problem=stale&datacenter=mdc2")) == {}


def test_unknown_problem_is_a_400_naming_the_parameter(client, sick_fleet):
    response = client.get("/machines?problem=broken")
    assert response.status_code == 400
    assert response.get_json()["parameter"] == "problem"


def test_csv_joins_the_problems_with_spaces(client, sick_fleet):
    rows = csv.DictReader(io.StringIO(client.get("/machines?format=csv").get_data(as_text=True)))
    by_host = {row["machine"]: row["problems"] for row in rows}
    assert by_host["t-black-hole"] == "consecutive_failures low_success_rate"
    assert by_host["t-healthy"] == ""


def test_one_machine_shows_its_recent_tasks_newest_first(client, sick_fleet):
    body = client.get("/machines/mdc1:t-flaky").get_json()
    assert body["problems"] == ["exceptions"]
    tasks = body["recent_tasks"]
    assert [(task["task_id"][:8], task["state"], task["reason_resolved"]) for task in tasks] == [
        ("TASK0205", "completed", "completed"), ("TASK0204", "exception", "worker-shutdown"),
        ("TASK0203", "completed", "completed"), ("TASK0202", "exception", "internal-error"),
        ("TASK0201", "completed", "completed"), ("TASK0200", "exception", "worker-shutdown"),
    ]
    assert tasks[0] == {
        "task_id": "TASK0205QAGAAAAAAAAAAA", "run_id": 0, "state": "completed",
        "reason_resolved": "completed", "started": "2026-11-20T14:35:00.000000",
        "resolved": "2026-11-20T14:45:00.000000",
        "url": f"{ROOT}/tasks/TASK0205QAGAAAAAAAAAAA/runs/0",
        # no label: nothing to judge it against
        "label": None, "attribution": None, "peers": None, "peer_median_seconds": None,
    }


def test_a_running_task_is_listed_without_resolution(client, sick_fleet):
    (task,) = client.get("/machines/t-hung").get_json()["recent_tasks"]
    assert (task["state"], task["reason_resolved"], task["resolved"]) == ("running", None, None)
    assert task["started"] == "2026-11-20T11:00:00.000000"


def test_recent_tasks_follow_the_setting(app_factory, sick_fleet):
    client = app_factory(make_config(recent_tasks=3)).test_client()
    tasks = client.get("/machines/mdc1:t-healthy").get_json()["recent_tasks"]
    assert [task["task_id"][:8] for task in tasks] == ["TASK0009", "TASK0008", "TASK0007"]


def test_recent_tasks_only_on_the_one_machine_view(client, sick_fleet):
    assert all("recent_tasks" not in machine for machine in client.get("/machines").get_json())


def test_machine_known_only_from_preload_has_no_tasks_and_no_history_problem(client, store):
    store.redis.hset("machines", "mdc1:t-old-1", "2026-11-20T14:00:00.000000")
    body = client.get("/machines/mdc1:t-old-1").get_json()
    assert (body["recent_tasks"], body["problems"]) == ([], [])


def test_thresholds_are_settings(app_factory, sick_fleet):
    config = make_config(hung_after=5 * 3600.0, failure_streak=6, stale_after=8 * 3600.0)
    found = problems_by_id(app_factory(config).test_client().get("/machines"))
    assert found["t-hung"] == [] and found["t-gone"] == []
    assert found["t-black-hole"] == ["low_success_rate"]


def test_summary_counts_machines_per_problem_in_each_group_and_in_total(client, sick_fleet):
    body = client.get("/summary").get_json()
    groups = {group["worker_type"]: group["problems"] for group in body["groups"]}
    assert groups["gecko-t-win10-64-hw"] == {**dict.fromkeys(PROBLEMS, 0),
                                             "idle_with_work_waiting": 1, "stale": 1}
    assert body["totals"]["problems"] == {
        "consecutive_failures": 1, "exceptions": 1, "hung_task": 1, "idle_with_work_waiting": 1,
        "lost_mid_task": 1, "low_success_rate": 1, "never_seen": 0, "not_in_inventory": 0, "stale": 1,
        # no run has a label: nothing is judged against its peers
        "fails_where_others_pass": 0, "slow": 0}


def test_metrics_gauge_counts_machines_per_problem_datacenter_and_worker_type(client, sick_fleet):
    text = client.get("/metrics").get_data(as_text=True)
    assert ('releng_hardware_machine_problems{datacenter="mdc1",problem="hung_task",'
            'worker_type="gecko-t-linux-talos"} 1.0') in text
    assert ('releng_hardware_machine_problems{datacenter="mdc1",problem="stale",'
            'worker_type="gecko-t-win10-64-hw"} 1.0') in text
    assert ('releng_hardware_machine_problems{datacenter="mdc1",problem="exceptions",'
            'worker_type="gecko-t-win10-64-hw"} 0.0') in text
    lines = [line for line in text.splitlines() if line.startswith("releng_hardware_machine_problems{")]
    assert len(lines) == 2 * len(PROBLEMS)


def test_etag_changes_when_a_task_becomes_hung_as_time_passes(app_factory, store):
    run(store, "t-slow", 1, minutes_ago=60, state="running")
    etag = app_factory(now=NOW).test_client().get("/machines").headers["ETag"]
    still = app_factory(now=NOW + timedelta(hours=1)).test_client()
    assert still.get("/machines", headers={"If-None-Match": etag}).status_code == 304
    hung = app_factory(now=NOW + timedelta(hours=2, minutes=1)).test_client()
    response = hung.get("/machines", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.get_json()[0]["problems"] == ["hung_task"]
