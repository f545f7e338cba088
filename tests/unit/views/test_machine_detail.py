"""/machines/<id> read in one round trip (Store.machine_detail, lua/machine_detail.lua) gives the
detail the store's separate reads give: the record, the runs shown with their labels and peers,
the inventory entry, the quarantine and the work waiting."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from releng_hardware.store.machines import history

from releng_hardware.store.machines import peers
from releng_hardware.core.config import Config
from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.views.fields import MachineDetail
from releng_hardware.views.fleet import busy_queues, machine_json, recent_tasks
from releng_hardware.core.problems import Thresholds
from releng_hardware.core.records import MachineRecord, Quarantine, Run
from releng_hardware.views.reads import read_machine
from releng_hardware.store.machines import Store
from releng_hardware.core.times import format_lastseen
from tests.conftest import NOW, make_config

PROVISIONER = "releng-hardware"
TALOS = "gecko-t-linux-talos"
MACHINE = "mdc1:ms-1"
# fewer than the store keeps (history_size): the runs past them need no label read
SHOWN = 6
FAILING_HERE = "test-linux1804-64/opt-mochitest-1"
PASSING = "test-linux1804-64/opt-xpcshell-2"
EXPIRED = "test-linux1804-64/opt-reftest-3"
OLDEST_ONLY = "test-linux1804-64/opt-jsreftest-4"


def run(store: Store, host: str, label: str | None, state: str, *, minutes_ago: float,
        number: int, took: float = 10, worker_type: str = TALOS) -> None:
    """One run of `host` ending `minutes_ago` before NOW (still running: started then)."""
    task = f"TASK{number:04d}QAGAAAAAAAAAAA"
    end = NOW - timedelta(minutes=minutes_ago)
    start = end - timedelta(minutes=took)
    reason = None if state == "running" else state
    store.record([WorkerEvent("mdc1", host, PROVISIONER, worker_type, task, 0, state, reason,
                              start if state == "running" else end, NOW + timedelta(days=1), True,
                              start, start if state == "running" else end, label)], now=NOW)


def fill(store: Store) -> None:
    """MACHINE with labelled runs whose peers ran elsewhere, a label run twice, a label gone,
    a run without a label, one still running and one written before labels; an inventory
    listing it, its quarantine and work waiting for its pool."""
    numbers = iter(range(1, 1000))
    # the oldest runs, past the ones shown
    run(store, "ms-1", OLDEST_ONLY, "completed", minutes_ago=400, number=next(numbers))
    for minutes in range(390, 330, -10):
        run(store, "ms-1", PASSING, "completed", minutes_ago=minutes, number=next(numbers))
    # peers on other machines: one failing like MACHINE, two passing; one long ago
    run(store, "ms-2", FAILING_HERE, "failed", minutes_ago=130, number=next(numbers))
    run(store, "ms-3", FAILING_HERE, "completed", minutes_ago=125, number=next(numbers))
    run(store, "ms-4", FAILING_HERE, "completed", minutes_ago=121, number=next(numbers),
        worker_type="gecko-t-win")
    run(store, "ms-5", FAILING_HERE, "failed", minutes_ago=26 * 60, number=next(numbers))
    run(store, "ms-3", PASSING, "completed", minutes_ago=100, number=next(numbers), took=12)
    run(store, "ms-1", FAILING_HERE, "failed", minutes_ago=120, number=next(numbers))
    run(store, "ms-1", EXPIRED, "failed", minutes_ago=90, number=next(numbers))
    run(store, "ms-1", PASSING, "completed", minutes_ago=80, number=next(numbers), took=11)
    run(store, "ms-1", None, "completed", minutes_ago=70, number=next(numbers))
    run(store, "ms-1", PASSING, "exception", minutes_ago=60, number=next(numbers))
    run(store, "ms-1", FAILING_HERE, "running", minutes_ago=5, number=next(numbers))
    # the label's runs left the window (its key expired)
    store.redis.delete(store.keys.label(history.label_ref(EXPIRED)))
    # an entry written before labels, the oldest: its reason where the attribution is now
    raw = store.redis.hget(store.keys.machine_history, MACHINE)
    new = history.encode_entry(NOW - timedelta(hours=9), NOW - timedelta(hours=10),
                               "OLDOLDOLDQAGAAAAAAAAAA", 0, history.EXCEPTION, "worker-shutdown")
    store.redis.hset(store.keys.machine_history, MACHINE,
                     raw + "\n" + new[:history.SPANS["attribution"].start] + "worker-shutdown")
    store.update_inventory(lambda current: {MACHINE: TALOS, "mdc1:ms-never": TALOS})
    until = format_lastseen(NOW + timedelta(hours=3))
    store.set_quarantine(MACHINE, Quarantine(until, "flaky disk", "someone", f"{PROVISIONER}/{TALOS}"))
    store.set_quarantine("mdc1:ms-3", Quarantine(format_lastseen(NOW - timedelta(minutes=1)),
                                                 "over", None, f"{PROVISIONER}/{TALOS}"))
    store.record([PendingEvent(PROVISIONER, TALOS, "PENDPENDQAGAAAAAAAAAAA", 0, NOW, NOW + timedelta(hours=2)),
                  PendingEvent(PROVISIONER, "gecko-t-win", "PENDPEN2QAGAAAAAAAAAAA", 0, NOW,
                               NOW + timedelta(hours=2))], now=NOW)


def runs_read_apart(store: Store, machine_id: str) -> tuple[Run, ...]:
    """The machine's history with each label's name and peers as the store read them before
    the one-round-trip read: the whole history decoded, every label read and decoded whole."""
    runs = history.decode_history(store.redis.hget(store.keys.machine_history, machine_id))
    window_ms = int(store.peer_window * 1000)
    found = []
    for run_ in runs:
        name, label_runs = peers.decode_label(
            store.redis.get(store.keys.label(run_.label))) if run_.label else ("", [])
        if not name:
            found.append(run_._replace(label=None))
            continue
        latest = run_.resolved or run_.started
        found.append(run_._replace(label=name, peers=None if latest is None else peers.peer_counts(
            peers.peer_runs(label_runs, machine_id,
                            history.entry_time(datetime.fromisoformat(latest)), window_ms))))
    return tuple(found)


def detail_read_apart(store: Store, config: Config, machine_id: str, now: datetime) -> MachineDetail:
    """/machines/<id> from the store's separate reads, as it was answered before."""
    record = MachineRecord(machine_id, store.redis.hget(store.keys.machines, machine_id),
                           orjson.loads(store.redis.hget(store.keys.machine_records, machine_id)),
                           runs_read_apart(store, machine_id))
    shown = machine_json(record, now, config.taskcluster_root_url,
                         busy_queues(store.pending_counts(now)), Thresholds.from_config(config),
                         in_inventory=store.inventory_lists(machine_id),
                         quarantine=store.quarantines(now).get(machine_id))
    return {**shown, "recent_tasks": recent_tasks(record.history, config.recent_tasks,
                                                  config.taskcluster_root_url)}


@pytest.fixture
def detail_config() -> Config:
    return make_config(recent_tasks=SHOWN)


@pytest.fixture
def filled(store: Store) -> Store:
    fill(store)
    return store


def test_the_fill_has_what_the_one_read_must_get_right(filled, detail_config):
    # the comparisons below mean something only if the machine has all of this
    expected = detail_read_apart(filled, detail_config, MACHINE, NOW)
    shown = expected["recent_tasks"]
    assert len(filled.machine(MACHINE).history) > SHOWN == len(shown)
    assert {task["label"] for task in shown} == {FAILING_HERE, PASSING, None}
    assert any(task["peers"] and task["peers"]["failed"] and task["peers"]["completed"]
               for task in shown)
    assert any(task["state"] == "running" and task["peers"] for task in shown)
    assert expected["quarantine"] is not None and "not_in_inventory" not in expected["problems"]
    assert "not_in_inventory" in detail_read_apart(filled, detail_config, "mdc1:ms-2",
                                                   NOW)["problems"]
    assert "gecko-t-win" in "".join(filled.pending_counts(NOW))


@pytest.mark.parametrize("machine_id", [MACHINE, "mdc1:ms-2", "mdc1:ms-3", "mdc1:ms-4"])
def test_one_read_gives_the_detail_the_separate_reads_give(filled, detail_config, machine_id):
    expected = detail_read_apart(filled, detail_config, machine_id, NOW)
    read = filled.machine_detail(machine_id, NOW, runs=detail_config.recent_tasks)
    assert read_machine(filled, detail_config, read, NOW) == expected
    # the dashboard's way: the whole record first, the rest read after it
    assert read_machine(filled, detail_config, filled.machine(machine_id), NOW) == expected


def test_the_api_answers_the_detail_the_separate_reads_give(filled, detail_config, app_factory):
    expected = detail_read_apart(filled, detail_config, MACHINE, NOW)
    response = app_factory(detail_config).test_client().get(f"/machines/{MACHINE}")
    assert response.status_code == 200
    assert response.get_json() == orjson.loads(orjson.dumps(expected))


def test_the_one_read_gives_only_the_runs_asked_for_each_with_its_peers(filled):
    everything = runs_read_apart(filled, MACHINE)
    for runs in (0, 1, SHOWN, len(everything), len(everything) + 5):
        read = filled.machine_detail(MACHINE, NOW, runs=runs)
        assert read.record is not None and read.record.history == everything[:runs]


def test_a_machine_keeps_its_whole_history_with_every_label_and_peers(filled):
    everything = runs_read_apart(filled, MACHINE)
    assert any(run_.label == OLDEST_ONLY for run_ in everything)
    assert filled.machine(MACHINE).history == everything


def test_the_one_read_gives_what_the_separate_reads_give(filled):
    read = filled.machine_detail(MACHINE, NOW, runs=SHOWN)
    assert read.pending == filled.pending_counts(NOW)
    assert read.in_inventory == filled.inventory_lists(MACHINE)
    assert read.quarantine == filled.quarantines(NOW)[MACHINE]
    record = read.record
    assert record is not None and (record.lastseen, record.details) == (
        filled.machine(MACHINE).lastseen, filled.machine(MACHINE).details)


def test_a_quarantine_over_by_now_is_not_read(filled):
    assert filled.machine_detail("mdc1:ms-3", NOW, runs=SHOWN).quarantine is None
    lasting = filled.machine_detail(MACHINE, NOW, runs=SHOWN).quarantine
    assert lasting is not None
    later = datetime.fromisoformat(lasting.until) + timedelta(seconds=1)
    assert filled.machine_detail(MACHINE, later, runs=SHOWN).quarantine is None
    assert MACHINE not in filled.quarantines(later)


def test_pending_work_past_its_deadline_is_not_counted(filled):
    later = NOW + timedelta(hours=3)
    assert filled.machine_detail(MACHINE, later, runs=SHOWN).pending == filled.pending_counts(later)
    assert not busy_queues(filled.machine_detail(MACHINE, later, runs=SHOWN).pending)


@pytest.mark.parametrize("machine_id, listed", [("mdc1:ms-never", True), ("mdc2:ms-1", False)])
def test_a_machine_never_seen_is_read_with_whether_the_inventory_lists_it(filled, machine_id,
                                                                          listed):
    read = filled.machine_detail(machine_id, NOW, runs=SHOWN)
    assert read.record is None and read.in_inventory is listed
    assert read.in_inventory == filled.inventory_lists(machine_id)


def test_without_an_inventory_a_machine_is_in_none(store):
    run(store, "ms-1", PASSING, "completed", minutes_ago=5, number=1)
    for machine_id in (MACHINE, "mdc1:ms-never"):
        assert store.machine_detail(machine_id, NOW, runs=SHOWN).in_inventory is None


def test_a_machine_without_history_or_labels_reads_like_before(store, config):
    # known only from preload: a lastseen, no record, no history
    store.preload({"mdc3:t-legacy-1": NOW - timedelta(hours=1)})
    read = store.machine_detail("mdc3:t-legacy-1", NOW, runs=SHOWN)
    assert read.record == MachineRecord("mdc3:t-legacy-1", format_lastseen(NOW - timedelta(hours=1)),
                                        {}, ())
    assert read.pending == {} and read.quarantine is None


def test_label_marks_are_decode_label_s_runs_cut_down(filled):
    raws: list[Any] = [filled.redis.get(filled.keys.label(history.label_ref(label)))
                       for label in (FAILING_HERE, PASSING, OLDEST_ONLY)]
    for raw in (*raws, None, ""):
        name, runs = peers.decode_label(raw)
        assert peers.decode_label_marks(raw) == (
            name, [peers.PeerMark(r.time_ms, r.code, r.machine_id) for r in runs])
    assert all(peers.decode_label_marks(raw)[1] for raw in raws)
