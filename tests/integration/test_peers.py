"""Attribution and peer medians on the real Redis: what the batch script judges, under any
delivery order, redeliveries and batch sizes."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from releng_hardware.core.events import WorkerEvent
from releng_hardware.store.machines import Store
from tests.conftest import stored_keys

T0 = datetime(2026, 11, 20, 12, 0, 0)
NOW = T0 + timedelta(hours=6)
BAD_PUSH = "test-linux1804-64-shippable-qr/opt-talos-g4-e10s"
PASSING = "test-linux1804-64-shippable-qr/opt-mochitest-1"


def run(host: str, number: int, state: str, minutes: float, label: str | None, *,
        took: float = 10, reason: str | None = None, running: bool = False) -> list[WorkerEvent]:
    """A run's messages: its start (when `running`) and its resolution `minutes` after T0."""
    resolved = T0 + timedelta(minutes=minutes)
    started = resolved - timedelta(minutes=took)
    task = f"TASK{number:04d}QAGAAAAAAAAAAA"
    resolution = WorkerEvent("mdc1", host, "releng-hardware", "gecko-t-linux-talos", task, 0, state,
                             reason or state, resolved, None, True, started, resolved, label)
    if not running:
        return [resolution]
    start = resolution._replace(state="running", reason_resolved=None, lastseen=started,
                                event_time=started)
    return [start, resolution]


def traffic() -> list[WorkerEvent]:
    events: list[WorkerEvent] = []
    # a bad push: one label fails on four machines within the hour
    for number, host in enumerate(("ms-1", "ms-2", "ms-3", "ms-4")):
        events += run(host, number, "failed", 60 + number * 10, BAD_PUSH, running=True)
    # a label that passes on five machines and fails only on ms-9 (which is slow elsewhere)
    for number, host in enumerate(("ms-5", "ms-6", "ms-7", "ms-8", "ms-2")):
        events += run(host, 10 + number, "completed", 30 + number * 5, PASSING, took=10 + number)
    events += run("ms-9", 20, "failed", 50, PASSING, running=True)
    events += run("ms-9", 21, "exception", 55, PASSING, reason="claim-expired")
    events += run("ms-9", 22, "completed", 58, PASSING, took=30)
    # not counted: never attributed
    events += run("ms-9", 23, "exception", 59, BAD_PUSH, reason="canceled")
    return events


def snapshot(store: Store) -> dict:
    return {m.machine_id: (m.lastseen, dict(m.details), store.machine(m.machine_id).history)
            for m in store.machines()}


def labels_stored(store: Store) -> dict:
    return {name: sorted(runs) for name, runs in store.failing_labels(NOW)}


def record_in_order(store: Store, events: list[WorkerEvent]) -> None:
    for event in events:
        store.record([event], now=NOW)


def test_attribution_follows_the_peers(real_store):
    record_in_order(real_store, traffic())
    by_task = {run.task_id[:8]: run for m in real_store.machines()
               for run in real_store.machine(m.machine_id).history}
    # four machines failed the bad push: each failure has three others failing beside it
    for number in range(4):
        failure = by_task[f"TASK{number:04d}"]
        assert (failure.label, failure.attribution) == (BAD_PUSH, "task")
        assert failure.peers == {"failed": 3, "completed": 0}
    # it passes on five other machines: ms-9's failure and lost run are the machine's
    assert by_task["TASK0020"].attribution == "machine"
    assert by_task["TASK0021"].attribution == "machine"
    assert by_task["TASK0020"].peers == {"failed": 0, "completed": 5}
    assert by_task["TASK0023"].attribution is None  # canceled: says nothing
    # its completion took 30 minutes where the others' median took 12
    slow = by_task["TASK0022"]
    assert slow.attribution is None and slow.peer_median_seconds == 12 * 60
    assert slow.duration_seconds == 30 * 60
    record = real_store.machine("mdc1:ms-9").details
    assert record["attributions"] == "NNMM"  # newest first: canceled, completed, lost, failed
    assert record["peer_ratios"] == [2.5]
    assert real_store.machine("mdc1:ms-1").details["attributions"] == "T"


def test_attribution_rises_as_evidence_arrives(real_store):
    first = run("ms-1", 1, "failed", 60, BAD_PUSH)
    real_store.record(first, now=NOW)
    assert real_store.machine("mdc1:ms-1").history[0].attribution is None  # no evidence yet
    real_store.record(run("ms-2", 2, "completed", 70, BAD_PUSH), now=NOW)
    assert real_store.machine("mdc1:ms-1").history[0].attribution == "machine"
    real_store.record(run("ms-3", 3, "failed", 80, BAD_PUSH), now=NOW)
    assert real_store.machine("mdc1:ms-1").history[0].attribution == "machine"  # one other only
    # the same batch that brings the second failure elsewhere changes ms-1's run
    real_store.record(run("ms-4", 4, "failed", 90, BAD_PUSH), now=NOW)
    assert real_store.machine("mdc1:ms-1").history[0].attribution == "task"
    assert real_store.machine("mdc1:ms-1").details["attributions"] == "T"


def test_runs_outside_the_window_are_no_peers(real_store):
    real_store.record(run("ms-1", 1, "failed", 0, BAD_PUSH), now=NOW + timedelta(days=2))
    real_store.record(run("ms-2", 2, "completed", 24 * 60 + 1, BAD_PUSH, took=1),
                      now=NOW + timedelta(days=2))
    assert real_store.machine("mdc1:ms-1").history[0].attribution is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_and_duplicated_delivery_judge_as_in_order(real_redis, redis_prefix, seed):
    events = traffic()
    ordered = Store(real_redis, redis_prefix + "ordered:")
    record_in_order(ordered, events)
    messy = events * 2
    random.Random(seed).shuffle(messy)
    shuffled = Store(real_redis, redis_prefix + "shuffled:")
    for start in range(0, len(messy), 3):
        shuffled.record(messy[start:start + 3], now=NOW)
    # the peer median is the one known when the completion is recorded: order may change it
    assert _without_medians(snapshot(shuffled)) == _without_medians(snapshot(ordered))
    assert labels_stored(shuffled) == labels_stored(ordered)


def _without_medians(state: dict) -> dict:
    return {machine_id: (seen, {k: v for k, v in details.items() if k != "peer_ratios"},
                         tuple(run._replace(peer_median_seconds=None) for run in history))
            for machine_id, (seen, details, history) in state.items()}


def test_old_schema_traffic_writes_what_it_wrote_before_labels(real_redis, redis_prefix):
    unlabelled = [event._replace(label=None) for event in traffic()]
    store = Store(real_redis, redis_prefix)
    record_in_order(store, unlabelled)
    for machine in store.machines():
        assert "attributions" not in machine.details and "peer_ratios" not in machine.details
        for stored in store.machine(machine.machine_id).history:
            assert (stored.label, stored.attribution, stored.peer_median_seconds) == (None,) * 3
    keys = set(stored_keys(store))
    assert not any(key.startswith(redis_prefix + "label") for key in keys)
