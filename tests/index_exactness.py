"""The machine index's exactness, defined once and run on two Redis servers: /summary counted
from the index is exactly /summary counted by judging every machine, after random traffic,
retention, inventory changes, preloads, backfills, quarantines, a build over old data and a change
of thresholds.

Not a test module itself: tests/unit/views/test_machine_index_exact.py runs these on fakeredis
(so `scripts/test tests/unit` covers /summary), tests/integration/test_machine_index.py on the
real Redis, each giving the `store` and `config` fixtures.
"""


from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.views.fleet import counted_json, summary
from releng_hardware.core.records import BackfillItem, Quarantine
from releng_hardware.views.reads import read_fleet, read_index, read_summary
from releng_hardware.store.index import JudgementWrite
from releng_hardware.store.machines import Store
from releng_hardware.core.times import format_lastseen
from releng_hardware.store.keys import lastseen_score, score
from releng_hardware.views.machine_index import judge_record
from releng_hardware.core.problems import Thresholds
from tests.conftest import make_config, stored_keys

NOW = datetime(2026, 11, 20, 18, 0, 0)
PROVISIONER = "releng-hardware"
WORKER_TYPES = ("gecko-t-linux-talos", "gecko-t-win10-64-hw", "gecko-t-osx-1015")
LABELS = tuple(f"test-platform/opt-suite-{n}" for n in range(6))
SOLID = LABELS[0]
RESOLUTIONS = (("completed", None), ("completed", None), ("completed", None), ("failed", None),
               ("failed", None), ("exception", "worker-shutdown"), ("exception", "claim-expired"),
               ("exception", "canceled"), ("exception", "deadline-exceeded"))


def random_traffic(rng: random.Random, hosts: int, runs: int) -> list[WorkerEvent | PendingEvent]:
    """Runs of `hosts` machines over the last 12 hours, whole seconds apart (no time falls
    within a millisecond of a cutoff); some machines' newest run still running, some long."""
    events: list[WorkerEvent | PendingEvent] = []
    for number in range(runs):
        host = rng.randrange(hosts)
        datacenter = ("mdc1", "mdc2")[host % 2]
        worker_type = WORKER_TYPES[host % 3]
        provisioner = PROVISIONER if host % 7 else "other-prov"
        # every fifth machine went quiet 7 hours ago: stale
        earliest = 7 * 3600 if host % 5 == 0 else 60
        started = NOW - timedelta(seconds=rng.randrange(earliest, 12 * 3600))
        resolved = started + timedelta(seconds=rng.randrange(30, 3000))
        task = f"T{number:05d}AAAQAGAAAAAAAAAA"[:22]
        # t-host-1's tasks have no label; t-host-2 fails the solid task that passes elsewhere
        label = rng.choice(LABELS) if rng.random() < 0.8 and host != 1 else None
        if host == 2:
            label = SOLID
        start = WorkerEvent(datacenter, f"t-host-{host}", provisioner, worker_type, task, 0,
                            "running", None, started, NOW + timedelta(days=1), True, started,
                            started, label)
        events.append(start)
        if rng.random() < 0.85 and resolved < NOW:
            state, reason = rng.choice(RESOLUTIONS)
            if host == 1 or (label == SOLID and host == 2):
                state, reason = "failed", None
            elif label == SOLID:
                state, reason = "completed", None
            events.append(start._replace(state=state, reason_resolved=reason or state,
                                         lastseen=resolved, event_time=resolved))
    for number in range(5):
        events.append(PendingEvent(PROVISIONER, WORKER_TYPES[0], f"P{number:05d}AAAQAGAAAAAAAAAA"[:22],
                                   0, NOW - timedelta(minutes=5), NOW + timedelta(hours=1)))
    return events


def deliver(store: Store, rng: random.Random, events: list[Any]) -> None:
    """Shuffled, some delivered twice, in batches of random sizes."""
    events = events + rng.sample(events, len(events) // 10)
    rng.shuffle(events)
    at = 0
    while at < len(events):
        size = rng.randrange(1, 60)
        store.record(events[at:at + size], now=NOW)
        at += size


def judged_one_by_one(store: Store, config: Any, stale_after: float | None = None) -> dict:
    """/summary as it was counted before the index: every machine read and judged."""
    fleet = read_fleet(store, config, NOW, stale_after, view=counted_json)
    return summary(fleet.machines + fleet.never_seen, fleet.pending,
                   config.stale_after if stale_after is None else stale_after, fleet.inventory)


def assert_exact(store: Store, config: Any, stale_after: float | None = None) -> dict:
    counted = read_summary(store, config, NOW, stale_after)
    assert counted == judged_one_by_one(store, config, stale_after)
    return counted


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_index_counts_what_judging_every_machine_counts(store, config, seed):
    rng = random.Random(seed)
    deliver(store, rng, random_traffic(rng, hosts=60, runs=700))
    counted = assert_exact(store, config)
    # the traffic has every kind of figure, so the comparison compares something
    totals = counted["totals"]
    assert totals["total"] == 60 and totals["stale"] and totals["seen_within_1h"]
    problems = totals["problems"]
    assert all(problems[code] for code in (
        "stale", "idle_with_work_waiting", "lost_mid_task", "low_success_rate"))
    assert problems["consecutive_failures"] and problems["fails_where_others_pass"]
    assert_exact(store, config, stale_after=2 * 3600)
    # more traffic on the same machines: the judgements follow
    deliver(store, rng, random_traffic(rng, hosts=60, runs=200))
    assert_exact(store, config)


def test_retention_inventory_quarantines_preload_and_backfill_keep_it_exact(store, config):
    rng = random.Random(7)
    deliver(store, rng, random_traffic(rng, hosts=40, runs=400))
    assert_exact(store, config)
    seen = sorted(machine.machine_id for machine in store.machines())
    # an inventory naming some machines seen and some never seen
    listed = {machine_id: None for machine_id in seen[:25]}
    listed.update({f"mdc1:t-never-{n}": WORKER_TYPES[n % 3] for n in range(6)})
    store.update_inventory(lambda current: listed)
    assert_exact(store, config)
    # quarantines of a machine seen, one never seen, and one unknown to the service
    until = format_lastseen(NOW + timedelta(days=1))
    for machine_id in (seen[0], seen[30], "mdc1:t-never-1", "mdc9:t-unknown"):
        store.set_quarantine(machine_id, Quarantine(until, "bad disk", "someone", PROVISIONER))
    store.set_quarantine(seen[1], Quarantine(format_lastseen(NOW - timedelta(hours=1)),
                                                  None, None, PROVISIONER))  # over already
    assert_exact(store, config)
    # retention: machines not seen for 6.5 hours go, unless the inventory lists them
    cutoff = NOW - timedelta(hours=6, minutes=30)
    while not store.remove_expired(cutoff, 15).wrapped:
        pass
    assert len(store.machines()) < len(seen)
    assert_exact(store, config)
    # a preload raising some machines' lastseen and adding new ones (no record: no group yet)
    store.preload({seen[5]: NOW - timedelta(minutes=1), "mdc2:t-preloaded": NOW - timedelta(hours=9)})
    assert_exact(store, config)
    # a backfill giving the preloaded machine its worker type, and adding one never recorded
    store.backfill([
        BackfillItem("mdc2:t-preloaded", NOW - timedelta(minutes=3), None, PROVISIONER, WORKER_TYPES[1]),
        BackfillItem("mdc1:t-backfilled", NOW - timedelta(minutes=2), NOW - timedelta(days=3),
                     PROVISIONER, WORKER_TYPES[2])])
    counted = assert_exact(store, config)
    assert counted["totals"]["quarantined"] == 3 and counted["totals"]["never_seen"] == 6


def test_machines_written_before_the_index_are_indexed_on_first_read(store, config):
    rng = random.Random(11)
    deliver(store, rng, random_traffic(rng, hosts=30, runs=300))
    # what a deployment had before the index: none of its keys
    index_keys = [key for key in stored_keys(store) if key.startswith(store.prefix + "index:")]
    assert index_keys
    store.redis.delete(*index_keys)
    before = judged_one_by_one(store, config)
    # the build runs in steps, on the first read
    assert read_summary(store, config, NOW) == before
    assert store.redis.hlen(store.keys.index_unjudged) == 0


def test_changed_thresholds_judge_every_machine_again(store, config):
    rng = random.Random(5)
    deliver(store, rng, random_traffic(rng, hosts=30, runs=400))
    default = assert_exact(store, config)["totals"]["problems"]
    stricter = make_config(redis_key_prefix=store.prefix, provisioner_ids=(PROVISIONER,),
                           failure_streak=2, exceptions_max=1)
    strict = assert_exact(store, stricter)["totals"]["problems"]
    assert strict["consecutive_failures"] >= default["consecutive_failures"]
    assert strict["exceptions"] > default["exceptions"]
    # and back: the index follows the thresholds of the process that reads it
    assert assert_exact(store, config)["totals"]["problems"] == default


def test_a_judgement_of_a_machine_written_since_is_not_stored(store, config):
    rng = random.Random(3)
    events = random_traffic(rng, hosts=20, runs=200)
    deliver(store, rng, events)
    read_index(store, config, NOW)  # every machine judged
    host = next(event for event in events if isinstance(event, WorkerEvent))
    # a web process reads the machine, then a listener writes it before the web stores its
    # judgement: the late judgement must not replace the newer record's
    store.record([host._replace(task_id="LATEAAAAQAGAAAAAAAAAAA", state="failed",
                                     reason_resolved="failed", lastseen=NOW, event_time=NOW)],
                      now=NOW)
    read_by_web = store.unjudged(100)
    assert [machine_id for machine_id, _, _ in read_by_web] == [host.machine_id]
    store.record([host._replace(task_id="LATERAAAQAGAAAAAAAAAAA", state="exception",
                                     reason_resolved="claim-expired", lastseen=NOW, event_time=NOW)],
                      now=NOW)
    limits = Thresholds.from_config(config)
    stale = [JudgementWrite(machine_id, generation, judge_record(record, limits).encoded())
             for machine_id, generation, record in read_by_web]
    assert store.judge(stale) == 0
    assert store.redis.hexists(store.keys.index_unjudged, host.machine_id)
    # two web processes judging the same machine: the first stores it, the second changes nothing
    first, second = store.unjudged(100), store.unjudged(100)
    judged = [JudgementWrite(machine_id, generation, judge_record(record, limits).encoded())
              for machine_id, generation, record in first]
    assert store.judge(judged) == 1
    assert store.judge([JudgementWrite(machine_id, generation, judge_record(record, limits).encoded())
                             for machine_id, generation, record in second]) == 0
    assert_exact(store, config)


def test_the_scripts_order_times_as_python_does(store):
    """lua/machine_index.lua's lastseen_score is machine_index.score of the same time."""
    from releng_hardware.store.scripts import script
    rng = random.Random(9)
    moments = [datetime(1999, 12, 31, 23, 59, 59, 999999), datetime(2000, 2, 29, 0, 0, 0),
               datetime(2026, 3, 1, 12, 30, 0, 1)]
    moments += [datetime(2020, 1, 1) + timedelta(microseconds=rng.randrange(10 ** 15))
                for _ in range(200)]
    texts = [format_lastseen(moment) for moment in moments]
    scores = store.redis.eval(script("machine_index") + """
      local out = {}
      for i, text in ipairs(ARGV) do out[i] = string.format('%.0f', lastseen_score(text)) end
      return out""", 0, *texts)
    assert [int(found) for found in scores] == [score(moment) for moment in moments]
    for unreadable in ("garbage", "2026-11-20T12:00:00", "2026-11-20 12:00:00.000000"):
        assert store.redis.eval(script("machine_index") + "return lastseen_score(ARGV[1])", 0, unreadable) == 0
        assert lastseen_score(unreadable) == 0
    assert [lastseen_score(text) for text in texts] == [score(moment) for moment in moments]


@pytest.mark.parametrize("seed", [4, 8])
def test_the_dashboard_pages_from_the_index_are_those_of_every_machine(store, config, seed,
                                                                      monkeypatch):
    from releng_hardware.web.app import dashboard
    from releng_hardware.views import reads
    from releng_hardware.views.fleet import MachineQuery
    rng = random.Random(seed)
    deliver(store, rng, random_traffic(rng, hosts=450, runs=2500))
    seen = sorted(machine.machine_id for machine in store.machines())
    listed = {machine_id: None for machine_id in seen[::3]}
    # never seen: sorting among the machines seen, and after them all
    listed.update({f"mdc1:t-host-{n}a": WORKER_TYPES[n % 3] for n in range(0, 450, 40)})
    listed["mdc2:zz-never"] = None
    store.update_inventory(lambda current: listed)
    until = format_lastseen(NOW + timedelta(days=1))
    for machine_id in (*seen[::37], "mdc1:t-host-40a", "mdc9:t-unknown"):
        store.set_quarantine(machine_id, Quarantine(until, None, None, PROVISIONER))
    # small steps of the walk, so that it merges the never-seen machines across many
    monkeypatch.setattr(reads, "WALK_CHUNK", 37)
    query = MachineQuery()
    assert dashboard.reads_index(query)
    shown = set()
    for requested in (1, 2, 3, 9):
        from_index = dashboard._page_from_index(store, config, NOW, requested)
        assert from_index == dashboard._page_from_fleet(store, config, NOW, query, requested)
        shown |= {section.key for section in from_index.sections}
    # judged, then written again: the index holds their old judgements and attention scores
    deliver(store, rng, random_traffic(rng, hosts=450, runs=600))
    assert store.redis.hlen(store.keys.index_unjudged) > 100
    for requested in (1, 2):
        assert (dashboard._page_from_index(store, config, NOW, requested)
                == dashboard._page_from_fleet(store, config, NOW, query, requested))
    # 450 machines and 13 never seen, 200 a page (page 9 is the last), every section shown
    assert from_index.pagination.count == 3
    assert shown == {"attention", "quarantined", "others"}
    # beyond the walk's budget the page is read from every machine, as before
    monkeypatch.setattr(reads, "WALK_BUDGET", 100)
    assert dashboard._page_from_index(store, config, NOW, 3) is None


def test_a_slow_judgement_of_an_older_record_fails_after_a_judged_machine_is_written_again(
        store, config):
    rng = random.Random(12)
    events = random_traffic(rng, hosts=5, runs=30)
    deliver(store, rng, events)
    read_index(store, config, NOW)
    host = next(event for event in events if isinstance(event, WorkerEvent))
    write = host._replace(task_id="SLOWAAAAQAGAAAAAAAAAAA", state="failed", reason_resolved="failed",
                          lastseen=NOW, event_time=NOW)
    store.record([write], now=NOW)
    slow_reader = store.unjudged(100)  # reads the record, then stalls
    read_index(store, config, NOW)  # another reader judges it: no longer unjudged
    store.record([write._replace(task_id="NEWERAAAQAGAAAAAAAAAAA", state="completed",
                                      reason_resolved="completed")], now=NOW)
    limits = Thresholds.from_config(config)
    late = [JudgementWrite(machine_id, generation, judge_record(record, limits).encoded())
            for machine_id, generation, record in slow_reader]
    assert store.judge(late) == 0  # the newer write's generation is not the one it read
    assert_exact(store, config)


# what a module collecting these tests imports with *
__all__ = [name for name in dict(globals()) if name.startswith("test_")]
