"""GET /labels and recent_tasks' peers: a bad push, one machine failing what passes elsewhere,
the parameters, CSV and the 400s."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from releng_hardware.core.events import WorkerEvent
from releng_hardware.store.machines import Store
from tests.conftest import NOW, make_config

ROOT = "https://firefox-ci-tc.services.mozilla.com"
BAD_PUSH = "test-linux1804-64-shippable-qr/opt-talos-g4-e10s"
PASSING = "test-windows10-64-hw/opt-mochitest-1"
counter = iter(range(1000))


def run(store: Store, host: str, label: str, state: str, *, minutes_ago: float,
        worker_type: str = "gecko-t-linux-talos", took: float = 10) -> str:
    task = f"TASK{next(counter):04d}QAGAAAAAAAAAAA"
    end = NOW - timedelta(minutes=minutes_ago)
    start = end - timedelta(minutes=took)
    store.record([WorkerEvent("mdc1", host, "releng-hardware", worker_type, task, 0, state, state,
                              end, None, True, start, end, label)], now=NOW)
    return task


@pytest.fixture
def peers_fleet(store):
    tasks = {}
    # a bad push: the label fails on four machines of two worker types
    for i, host in enumerate(("ms-1", "ms-2", "ms-3")):
        tasks[host] = run(store, host, BAD_PUSH, "failed", minutes_ago=60 - i)
    tasks["w-1"] = run(store, "w-1", BAD_PUSH, "failed", minutes_ago=50, worker_type="gecko-t-win")
    # a label failing on one machine and passing on three others
    for i, host in enumerate(("ms-5", "ms-6", "ms-7")):
        run(store, host, PASSING, "completed", minutes_ago=40 - i, took=10 + i)
    tasks["ms-9"] = run(store, "ms-9", PASSING, "failed", minutes_ago=30)
    tasks["ms-9 done"] = run(store, "ms-9", PASSING, "completed", minutes_ago=20, took=22)
    # a failure older than the window is no longer evidence
    run(store, "ms-8", PASSING, "failed", minutes_ago=25 * 60)
    return tasks


def test_labels_lists_what_fails_on_more_than_peer_failures_machines(client, peers_fleet):
    body = client.get("/labels").get_json()
    assert body == [{
        "label": BAD_PUSH, "worker_types": ["gecko-t-linux-talos", "gecko-t-win"],
        "machines_failed": 4, "machines_completed": 0, "failed_runs": 4, "completed_runs": 0,
        "last_failure": (NOW - timedelta(minutes=50)).isoformat(timespec="microseconds"),
        "last_failure_url": f"{ROOT}/tasks/{peers_fleet['w-1']}/runs/0",
    }]


def test_labels_parameters_select_and_lower_the_bar(client, peers_fleet):
    assert [label["label"] for label in client.get("/labels?min_machines=1").get_json()] == [
        BAD_PUSH, PASSING]
    linux = client.get("/labels?worker_type=gecko-t-linux-talos").get_json()
    assert [(label["machines_failed"], label["worker_types"]) for label in linux] == [
        (3, ["gecko-t-linux-talos"])]
    assert client.get("/labels?min_machines=5").get_json() == []


def test_labels_default_bar_follows_peer_failures(app_factory, peers_fleet):
    client = app_factory(make_config(peer_failures=3)).test_client()
    assert [label["label"] for label in client.get("/labels").get_json()] == [BAD_PUSH]
    client = app_factory(make_config(peer_failures=4)).test_client()
    assert client.get("/labels").get_json() == []


def test_labels_as_csv(client, peers_fleet):
    response = client.get("/labels?format=csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["label", "worker_types", "machines_failed"]
    assert rows[1][:3] == [BAD_PUSH, "gecko-t-linux-talos gecko-t-win", "4"]


@pytest.mark.parametrize("query, error", [
    ("min_machines=0", "bad_parameter"), ("min_machines=x", "bad_parameter"),
    ("worker_type=a%20b", "bad_parameter"), ("format=xml", "bad_parameter"),
    ("other=1", "unknown_parameter")])
def test_labels_refuses_bad_parameters(client, query, error):
    response = client.get(f"/labels?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"] == error


def test_recent_tasks_say_label_attribution_peers_and_peer_median(client, peers_fleet):
    tasks = client.get("/machines/mdc1:ms-9").get_json()["recent_tasks"]
    done, failed = tasks
    assert (failed["label"], failed["attribution"]) == (PASSING, "machine")
    assert failed["peers"] == {"failed": 0, "completed": 3}
    assert failed["peer_median_seconds"] is None
    assert (done["attribution"], done["peer_median_seconds"]) == (None, 11 * 60)
    (bad,) = client.get("/machines/mdc1:ms-1").get_json()["recent_tasks"]
    assert (bad["attribution"], bad["peers"]) == ("task", {"failed": 3, "completed": 0})


def test_failures_of_a_bad_push_are_no_machine_s_problem(client, peers_fleet):
    machines = {m["id"]: m["problems"] for m in client.get("/machines").get_json()}
    assert all("consecutive_failures" not in problems for problems in machines.values())
    assert client.get("/machines?problem=fails_where_others_pass").status_code == 200
