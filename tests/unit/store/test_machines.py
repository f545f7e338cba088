"""Store semantics on fakeredis: monotonic lastseen, deduplicated counters, pending tasks."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import orjson
import pytest
import redis

from releng_hardware.store.machines import history
from releng_hardware.core.events import PendingEvent, WorkerEvent, parse_message
from releng_hardware.core.records import EXCEPTION, RUNNING, Run
from releng_hardware.tools.simulate import backlog
from releng_hardware.store.machines import peers
from releng_hardware.store.machines import BATCH_LAYOUT, PENDING_ITEM, WORKER_ITEM, Store
from releng_hardware.core.times import epoch_seconds
from tests.conftest import NOW, stored_keys

T0 = datetime(2026, 11, 20, 12, 0, 0)
DEADLINE = datetime(2026, 11, 21, 12, 0, 0)


def event(minutes: float = 0, *, state: str = "completed", task: str = "AAAAAAAAQAGAAAAAAAAAAA",
          run: int = 0, host: str = "t-linux64-ms-100", dc: str = "mdc1",
          worker_type: str = "gecko-t-linux-talos", deadline: datetime | None = DEADLINE,
          reason: str | None = None, started: float | None = None) -> WorkerEvent:
    return WorkerEvent(dc, host, "releng-hardware", worker_type, task, run, state,
                       reason or (None if state == "running" else state), T0 + timedelta(minutes=minutes),
                       deadline, True, None if started is None else T0 + timedelta(minutes=started))


def task(number: int) -> str:
    return f"TASK{number:04d}QAGAAAAAAAAAAA"


def pending(task: str = "BBBBBBBBQAGAAAAAAAAAAA", run: int = 0, deadline: datetime = DEADLINE,
            worker_type: str = "gecko-t-linux-talos") -> PendingEvent:
    return PendingEvent("releng-hardware", worker_type, task, run, T0, deadline)


def snapshot(store: Store) -> dict:
    return {m.machine_id: (m.lastseen, dict(m.details), store.machine(m.machine_id).history)
            for m in store.machines()}


def test_lastseen_is_the_event_time_in_the_proof_of_concept_format(store):
    store.record([event(5)], now=NOW)
    assert store.redis.hgetall("machines") == {"mdc1:t-linux64-ms-100": "2026-11-20T12:05:00.000000"}


def test_lastseen_never_moves_backwards(store):
    store.record([event(10, task="CCCCCCCCQAGAAAAAAAAAAA")], now=NOW)
    store.record([event(5, task="DDDDDDDDQAGAAAAAAAAAAA")], now=NOW)
    record = store.machine("mdc1:t-linux64-ms-100")
    assert record.lastseen == "2026-11-20T12:10:00.000000"
    assert record.details["task_id"] == "CCCCCCCCQAGAAAAAAAAAAA"
    assert record.details["firstseen"] == "2026-11-20T12:05:00.000000"
    assert record.details["completed"] == 2


def test_redelivered_resolution_is_counted_once(store):
    first = store.record([event(1), event(1)], now=NOW)
    second = store.record([event(1)], now=NOW)
    assert (first.written, first.duplicates, second.duplicates) == (1, 1, 1)
    assert store.machine("mdc1:t-linux64-ms-100").details["completed"] == 1
    assert store.listener_status()["duplicate"] == "2"


def test_each_resolution_kind_has_its_counter(store):
    store.record([
        event(1, state="running", task="EEEEEEEEQAGAAAAAAAAAAA"),
        event(2, state="completed", task="EEEEEEEEQAGAAAAAAAAAAA"),
        event(3, state="failed", task="FFFFFFFFQAGAAAAAAAAAAA"),
        event(4, state="exception", task="GGGGGGGGQAGAAAAAAAAAAA"),
        event(5, state="exception", task="GGGGGGGGQAGAAAAAAAAAAA", run=1),
    ], now=NOW)
    details = store.machine("mdc1:t-linux64-ms-100").details
    assert (details["completed"], details["failed"], details["exception"]) == (1, 1, 2)
    assert (details["task_id"], details["run_id"], details["state"]) == ("GGGGGGGGQAGAAAAAAAAAAA", 1, "exception")
    assert details["reason_resolved"] == "exception"


def test_resolution_wins_over_start_at_the_same_instant(store):
    store.record([event(1, state="completed", task="HHHHHHHHQAGAAAAAAAAAAA"),
                  event(1, state="running", task="IIIIIIIIQAGAAAAAAAAAAA")], now=NOW)
    assert store.machine("mdc1:t-linux64-ms-100").details["state"] == "completed"


def without_medians(state: dict) -> dict:
    return {machine_id: (seen, {k: v for k, v in details.items() if k != "peer_ratios"},
                         tuple(run._replace(peer_median_seconds=None) for run in runs))
            for machine_id, (seen, details, runs) in state.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_duplicates_and_reordering_give_the_state_of_one_ordered_pass(fake_redis, seed):
    messages = backlog(1500, machines=30, end=NOW, seed=seed)
    events = [parse_message(m.exchange, m.routing_key, m.encoded(), NOW) for m in messages]
    events = [e for e in events if isinstance(e, (WorkerEvent, PendingEvent))]
    ordered = Store(fake_redis, "ordered:")
    for start in range(0, len(events), 100):
        ordered.record(events[start:start + 100], now=NOW)

    messy = events * 2
    random.Random(seed).shuffle(messy)
    shuffled = Store(fake_redis, "shuffled:")
    for start in range(0, len(messy), 37):
        shuffled.record(messy[start:start + 37], now=NOW)

    # a completion's peer median is the one known when it is recorded (the issue allows it):
    # every other field, the attributions included, is the ordered pass's
    assert without_medians(snapshot(shuffled)) == without_medians(snapshot(ordered))
    assert ordered.pending_counts(NOW) == shuffled.pending_counts(NOW)
    assert sum(d["completed"] + d["failed"] + d["exception"] for _, d, _ in snapshot(ordered).values()) == \
        sum(1 for e in events if isinstance(e, WorkerEvent) and e.state != "running")


def test_history_per_machine_is_bounded_and_needs_no_run_set(store):
    store.record([event(i, task=f"{i:08d}QAGAAAAAAAAAAA"[-22:].replace("0", "A"), run=i % 5)
                  for i in range(store.history_size + 50)], now=NOW)
    assert len(store.machine("mdc1:t-linux64-ms-100").history) == store.history_size
    assert not store.redis.exists("runs:mdc1:t-linux64-ms-100")


def test_run_older_than_a_full_history_is_not_counted_again(store):
    events = [event(i, task="JJJJJJJJQAGAAAAAAAAAAA", run=i) for i in range(store.history_size + 1)]
    store.record(events, now=NOW)
    before = store.machine("mdc1:t-linux64-ms-100")
    result = store.record([events[0]], now=NOW)
    assert result.duplicates == 1
    assert store.machine("mdc1:t-linux64-ms-100") == before


def test_machine_known_only_from_the_proof_of_concept_hash_keeps_working(store):
    store.redis.hset("machines", "mdc1:t-linux64-ms-100", "2026-11-20T13:00:00")
    store.record([event(30)], now=NOW)
    record = store.machine("mdc1:t-linux64-ms-100")
    assert record.lastseen == "2026-11-20T13:00:00"
    assert record.details["completed"] == 1
    store.record([event(61, task="KKKKKKKKQAGAAAAAAAAAAA")], now=NOW)
    assert store.machine("mdc1:t-linux64-ms-100").lastseen == "2026-11-20T13:01:00.000000"


def test_pending_task_counts_until_it_starts(store):
    store.record([pending(), pending(task="LLLLLLLLQAGAAAAAAAAAAA")], now=NOW)
    assert store.pending_counts(NOW) == {"releng-hardware/gecko-t-linux-talos": 2}
    store.record([event(1, state="running", task="BBBBBBBBQAGAAAAAAAAAAA")], now=NOW)
    assert store.pending_counts(NOW) == {"releng-hardware/gecko-t-linux-talos": 1}


def test_late_pending_message_does_not_bring_a_started_task_back(store):
    store.record([event(1, state="running", task="BBBBBBBBQAGAAAAAAAAAAA")], now=NOW)
    result = store.record([pending(), pending()], now=NOW)
    assert store.pending_counts(NOW) == {}
    assert result.ignored == 2


def test_pending_task_expires_at_its_deadline(store):
    store.record([pending(deadline=NOW + timedelta(minutes=5))], now=NOW)
    assert store.pending_counts(NOW)["releng-hardware/gecko-t-linux-talos"] == 1
    assert store.pending_counts(NOW + timedelta(minutes=6))["releng-hardware/gecko-t-linux-talos"] == 0
    store.record([pending(task="MMMMMMMMQAGAAAAAAAAAAA", deadline=NOW + timedelta(days=1))],
                 now=NOW + timedelta(minutes=6))
    assert store.redis.zcard("pending:releng-hardware/gecko-t-linux-talos") == 1


def test_listener_counters_add_up_per_batch(store):
    store.record([event(1)], now=NOW, processed=4, skipped=2, malformed=1)
    store.record([event(1)], now=NOW + timedelta(seconds=1))
    status = store.listener_status()
    assert {name: status[name] for name in ("processed", "written", "skipped", "malformed", "duplicate")} == \
        {"processed": "5", "written": "1", "skipped": "2", "malformed": "1", "duplicate": "1"}
    assert status["last_message_at"] == "2026-11-20T15:00:01.000000"
    assert status["newest_event_at"] == "2026-11-20T12:01:00.000000"


def test_key_prefix_keeps_two_stores_apart(fake_redis):
    Store(fake_redis, "a:").record([event(1)], now=NOW)
    assert Store(fake_redis, "b:").machines() == []
    assert fake_redis.hlen("a:machines") == 1 and not fake_redis.exists("machines")


def test_preload_raises_lastseen_and_keeps_newer(store):
    store.record([event(60)], now=NOW)
    written, kept = store.preload({
        "mdc1:t-linux64-ms-100": T0,  # older than what the listener saw
        "mdc2:t-w1064-ms-281": T0,
    })
    assert (written, kept) == (1, 1)
    assert store.redis.hgetall("machines") == {
        "mdc1:t-linux64-ms-100": "2026-11-20T13:00:00.000000",
        "mdc2:t-w1064-ms-281": "2026-11-20T12:00:00.000000",
    }


def test_hostname_lookup_finds_every_datacenter(store):
    store.record([event(1, dc="mdc1"), event(2, dc="mdc2"), event(3, host="t-linux64-ms-1000")], now=NOW)
    assert store.machine_ids_for_hostname("t-linux64-ms-100") == ["mdc1:t-linux64-ms-100", "mdc2:t-linux64-ms-100"]
    assert store.machine_ids_for_hostname("nope") == []


# -- per-machine history -------------------------------------------------------------

MACHINE = "mdc1:t-linux64-ms-100"


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat(timespec="microseconds")


def test_history_has_one_entry_per_run_and_the_resolution_replaces_the_start(store):
    store.record([event(1, state="running", task=task(1))], now=NOW)
    assert store.machine(MACHINE).history == (
        Run(task(1), 0, "running", None, at(1), None),)
    store.record([event(9, state="failed", task=task(1), started=1)], now=NOW)
    assert store.machine(MACHINE).history == (
        Run(task(1), 0, "failed", "failed", at(1), at(9)),)


def test_resolution_without_its_start_keeps_the_start_of_the_running_entry(store):
    store.record([event(1, state="running", task=task(1))], now=NOW)
    store.record([event(9, state="exception", reason="worker-shutdown", task=task(1))], now=NOW)
    assert store.machine(MACHINE).history[0] == Run(task(1), 0, "exception", "worker-shutdown", at(1), at(9))


def test_history_is_newest_first_by_resolution_else_start(store):
    store.record([
        event(1, state="running", task=task(1)),
        event(5, state="completed", task=task(1), started=1),
        event(6, state="running", task=task(2)),
        event(2, state="exception", reason="canceled", task=task(3), run=2, started=0),
    ], now=NOW)
    runs = store.machine(MACHINE).history
    assert [(run.task_id, run.state, run.reason_resolved) for run in runs] == [
        (task(2), "running", None), (task(1), "completed", "completed"), (task(3), "exception", "canceled")]
    assert runs[2].run_id == 2


def test_record_keeps_the_ended_runs_outcomes_newest_first(store):
    store.record([
        event(1, task=task(1)),
        event(2, state="failed", task=task(2)),
        event(3, state="exception", reason="claim-expired", task=task(3)),
        event(4, state="exception", reason="superseded", task=task(4)),
        event(5, state="exception", reason="worker-shutdown", task=task(5)),
        event(6, state="running", task=task(6)),
    ], now=NOW)
    assert store.machine(MACHINE).details["outcomes"] == "exlfc"


def test_redelivery_and_a_late_start_change_nothing(store):
    store.record([event(1, state="running", task=task(1)), event(5, task=task(1), started=1)], now=NOW)
    before, version = snapshot(store), store.data_version()
    result = store.record([event(1, state="running", task=task(1)), event(5, task=task(1), started=1)],
                          now=NOW)
    assert (result.written, result.duplicates) == (0, 2)
    assert (snapshot(store), store.data_version()) == (before, version)


def test_redelivered_start_of_a_run_still_running_changes_nothing(store):
    store.record([event(1, state="running", task=task(1))], now=NOW)
    before, version = snapshot(store), store.data_version()
    assert store.record([event(1, state="running", task=task(1))], now=NOW).duplicates == 1
    assert (snapshot(store), store.data_version()) == (before, version)


def test_resolution_before_its_start_gives_the_same_history_and_record(fake_redis):
    start, end = event(1, state="running", task=task(1)), event(5, state="failed", task=task(1), started=1)
    in_order, reordered = Store(fake_redis, "in-order:"), Store(fake_redis, "reordered:")
    in_order.record([start], now=NOW)
    in_order.record([end], now=NOW)
    reordered.record([end], now=NOW)
    reordered.record([start], now=NOW)
    assert snapshot(reordered) == snapshot(in_order)
    assert snapshot(in_order)[MACHINE][1]["firstseen"] == at(1)


def test_run_times_outside_what_an_entry_holds_keep_the_history_readable(store):
    ancient = WorkerEvent("mdc1", "t-linux64-ms-100", "releng-hardware", "gecko-t-linux-talos", task(1), 0,
                          "completed", "completed", T0, DEADLINE, True, datetime(1960, 1, 1), T0)
    store.record([ancient, event(5, task=task(2), started=4)], now=NOW)
    runs = store.machine(MACHINE).history
    assert [run.task_id for run in runs] == [task(2), task(1)]
    assert runs[1].started == "1970-01-01T00:00:00.001000" and runs[1].resolved == at(0)


def test_history_follows_recent_tasks_but_keeps_what_the_rules_need(fake_redis):
    assert Store(fake_redis, recent_tasks=40).history_size > 40
    assert Store(fake_redis, recent_tasks=5).history_size == Store(fake_redis).history_size > 20


def _old_version_machine(store: Store) -> WorkerEvent:
    """A machine as the version before the history left it: a record and a run set."""
    old = event(1, task=task(1))
    store.redis.hset("machines", MACHINE, at(1))
    store.redis.hset("machine_records", MACHINE, orjson.dumps({
        "completed": 1, "failed": 0, "exception": 0, "firstseen": at(1), "provisioner": "releng-hardware",
        "worker_type": "gecko-t-linux-talos", "task_id": task(1), "run_id": 0, "state": "completed",
        "task_time": at(1), "reason_resolved": "completed"}))
    store.redis.zadd(f"runs:{MACHINE}", {f"{task(1)}/0/completed": 1763640060.0})
    return old


def test_old_version_run_set_still_recognises_its_redeliveries(store):
    old = _old_version_machine(store)
    store.record([event(3, task=task(2))], now=NOW)
    result = store.record([old], now=NOW)
    record = store.machine(MACHINE)
    assert result.duplicates == 1
    assert record.details["completed"] == 2
    assert [run.task_id for run in record.history] == [task(2)]
    assert record.details["task_id"] == task(2)


def test_old_version_run_set_goes_once_the_history_covers_it(store):
    _old_version_machine(store)
    store.record([event(10 + i, task=task(10 + i)) for i in range(store.history_size)], now=NOW)
    assert not store.redis.exists(f"runs:{MACHINE}")
    details = store.machine(MACHINE).details
    assert "legacy_runs" not in details
    assert details["completed"] == 1 + store.history_size


# -- the batch layout Python sends and Lua reads -------------------------------------


def test_a_worker_item_holds_each_field_where_its_layout_names_it():
    worker = event(5, state="exception", reason="worker-shutdown", started=2)
    item = dict(zip(WORKER_ITEM, Store._worker_item(worker), strict=True))
    assert item == {
        "kind": "w", "machine_id": MACHINE, "lastseen": at(5), "firstseen": at(2), "event_time": at(5),
        "provisioner": "releng-hardware", "worker_type": "gecko-t-linux-talos",
        "task_id": worker.task_id, "run_id": "0", "state": "exception", "reason": "worker-shutdown",
        "deadline": repr(epoch_seconds(DEADLINE)),
        "entry": history.encode_entry(worker.lastseen, T0 + timedelta(minutes=2), worker.task_id, 0,
                                      EXCEPTION, "worker-shutdown"),
        "label": "",  # the event has none
    }


def test_a_pending_item_holds_each_field_where_its_layout_names_it():
    item = dict(zip(PENDING_ITEM, Store._pending_item(pending(run=2)), strict=True))
    assert item == {"kind": "p", "queue": "releng-hardware/gecko-t-linux-talos",
                    "task_run": "BBBBBBBBQAGAAAAAAAAAAA/2",
                    "deadline": repr(epoch_seconds(DEADLINE))}


def test_the_batch_script_gets_the_layouts_python_writes_with():
    layout = orjson.loads(BATCH_LAYOUT)
    assert layout["worker"] == list(WORKER_ITEM) and layout["pending"] == list(PENDING_ITEM)
    assert layout["entry"] == history.lua_spans() and layout["running"] == RUNNING


@pytest.mark.parametrize("broken", [
    {"worker": [name for name in WORKER_ITEM if name != "deadline"]},
    {"pending": ["queue", "kind", "task_run", "deadline"]},
    {"entry": {name: span for name, span in history.lua_spans().items() if name != "run_key"}},
    {"peer": {name: span for name, span in peers.lua_spans().items() if name != "machine"}},
])
def test_a_layout_the_script_cannot_read_fails_the_batch_before_any_write(store, broken):
    layout = {**orjson.loads(BATCH_LAYOUT), **broken}
    items = orjson.dumps([Store._worker_item(event(1)), Store._pending_item(pending())])
    with pytest.raises(redis.ResponseError):
        store._record_batch(keys=[store.keys.machines, store.keys.machine_records, store.keys.listener,
                                  store.keys.machine_history],
                            args=["", 0, store.history_size, 2, 0, 0, at(1), items, orjson.dumps(layout),
                                  store._peer_settings])
    assert list(stored_keys(store)) == []
