"""Retention on the real Redis: machines past RETENTION go with every per-machine key, a bounded
step at a time, shared by several sweepers; inventory machines stay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from releng_hardware.core.events import WorkerEvent
from releng_hardware.store.machines import Store
from releng_hardware.core.times import format_lastseen, utcnow
from tests.conftest import make_config, wait_for

RETENTION = timedelta(days=30)
# more than Redis keeps in a compact hash (128 entries), so HSCAN really goes step by step
OLD, RECENT = 300, 300


def run_on(store: Store, host: str, ago: timedelta, now, task: str = "AAAAAAAAQAGAAAAAAAAAAA") -> None:
    moment = now - ago
    store.record([WorkerEvent("mdc1", host, "releng-hardware", "gecko-t-linux", task, 0, state,
                              None if state == "running" else "completed", moment,
                              moment + timedelta(days=1), True)
                  for state in ("running", "completed")], now=moment)


@pytest.fixture
def fleet(real_store):
    """Old and recent machines with histories, an old legacy run set, an old inventory machine."""
    now = utcnow()
    for number in range(OLD):
        run_on(real_store, f"old-{number}", RETENTION + timedelta(days=1 + number % 5), now)
    for number in range(RECENT):
        run_on(real_store, f"new-{number}", timedelta(days=number % 29), now)
    run_on(real_store, "listed-old", RETENTION * 3, now)
    real_store.update_inventory(lambda current: {"mdc1:listed-old": "gecko-t-linux",
                                                 "mdc1:listed-never-seen": None})
    # a machine the proof of concept knew, and the run set versions before the history wrote
    real_store.redis.hset(real_store.keys.machines, "mdc2:legacy-1", "2018-11-08T08:47:50")
    real_store.redis.zadd(real_store.prefix + "runs:mdc1:old-0", {"AAAAAAAAQAGAAAAAAAAAAA/0/completed": 1})
    return now


def per_machine_entries(store: Store, machine_id: str) -> list[str]:
    """Where the store holds anything of this machine."""
    found = [key[len(store.prefix):]
             for key in (store.keys.machines, store.keys.machine_records, store.keys.machine_history)
             if store.redis.hexists(key, machine_id)]
    if store.redis.exists(store.prefix + "runs:" + machine_id):
        found.append("runs")
    return found


def sweep_once_around(stores: list[Store], cutoff, count: int) -> list:
    """Steps, taking turns between the stores, until one ends a pass over every machine."""
    steps = []
    while True:
        step = stores[len(steps) % len(stores)].remove_expired(cutoff, count)
        steps.append(step)
        if step.wrapped or len(steps) > 1000:
            return steps


def test_machines_past_retention_go_with_their_history_inventory_machines_stay(real_store, fleet):
    old_keys = per_machine_entries(real_store, "mdc1:old-0")
    assert old_keys == ["machines", "machine_records", "machine_history", "runs"]
    version = real_store.data_version()

    steps = sweep_once_around([real_store], fleet - RETENTION, count=50)

    assert sum(step.removed for step in steps) == OLD + 1  # and the proof of concept's one
    # bounded: many small steps, none looking at much more than it was asked to
    assert len(steps) >= (OLD + RECENT) // 100
    assert max(step.examined for step in steps) < 200
    ids = set(real_store.lastseen_by_machine())
    assert ids == {f"mdc1:new-{n}" for n in range(RECENT)} | {"mdc1:listed-old"}
    for machine_id in ("mdc1:old-0", "mdc1:old-299", "mdc2:legacy-1"):
        assert per_machine_entries(real_store, machine_id) == []
    assert per_machine_entries(real_store, "mdc1:listed-old") == [
        "machines", "machine_records", "machine_history"]
    assert real_store.redis.hlen(real_store.keys.machine_records) == RECENT + 1
    assert real_store.redis.hlen(real_store.keys.machine_history) == RECENT + 1
    assert real_store.data_version() > version  # the ETags change
    assert real_store.inventory() == {"mdc1:listed-old": "gecko-t-linux",
                                      "mdc1:listed-never-seen": None}


def test_sweepers_share_one_cursor_and_a_pass_removes_each_machine_once(real_store, fleet,
                                                                       redis_prefix):
    others = [Store(real_store.redis, redis_prefix) for _ in range(2)]
    steps = sweep_once_around([real_store, *others], fleet - RETENTION, count=50)
    assert sum(step.removed for step in steps) == OLD + 1
    # the three took turns in one pass, each going on from where the last stopped: about
    # as many steps as one sweeper needs, not three passes
    machines = OLD + RECENT + 2
    assert machines // 50 <= len(steps) < 2 * machines // 50
    again = sweep_once_around(others, fleet - RETENTION, count=50)
    assert sum(step.removed for step in again) == 0


def test_a_machine_seen_again_before_its_step_stays(real_store, fleet):
    run_on(real_store, "old-7", timedelta(minutes=1), fleet, task="BBBBBBBBQAGAAAAAAAAAAA")
    sweep_once_around([real_store], fleet - RETENTION, count=50)
    assert per_machine_entries(real_store, "mdc1:old-7") == [
        "machines", "machine_records", "machine_history"]
    assert real_store.machine("mdc1:old-7").history[0].task_id == "BBBBBBBBQAGAAAAAAAAAAA"


def test_the_listener_sweeps_while_it_runs(listener_thread, amqp_config, real_store, fleet):
    thread = listener_thread(amqp_config)
    assert thread.listener.config.retention == RETENTION.total_seconds()
    # the first step runs at once; the whole test fleet fits in one step
    wait_for(lambda: not real_store.redis.hexists(real_store.keys.machines, "mdc1:old-3"), 10,
             "the listener removed no machine past RETENTION")
    assert len(real_store.lastseen_by_machine()) == RECENT + 1


def test_retention_zero_keeps_every_machine(listener_thread, amqp_config, real_store, fleet):
    from dataclasses import replace

    thread = listener_thread(replace(amqp_config, retention=0.0))
    wait_for(lambda: real_store.redis.hget(real_store.keys.listener, "heartbeat_at"), 10,
             "the listener never reported")
    thread.listener.sweep()
    assert real_store.redis.hexists(real_store.keys.machines, "mdc1:old-3")
    assert not real_store.redis.exists(real_store.keys.retention_cursor)
    assert make_config().retention == RETENTION.total_seconds()


def test_cutoff_compares_as_time(real_store):
    now = utcnow()
    real_store.redis.hset(real_store.keys.machines, mapping={
        "mdc1:just-before": format_lastseen(now - RETENTION - timedelta(microseconds=1)),
        "mdc1:just-after": format_lastseen(now - RETENTION + timedelta(microseconds=1))})
    assert real_store.remove_expired(now - RETENTION).removed == 1
    assert list(real_store.lastseen_by_machine()) == ["mdc1:just-after"]
