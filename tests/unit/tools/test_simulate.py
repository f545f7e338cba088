"""The simulator speaks the queue's format: every message parses as the real ones do."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import datetime, timedelta

from releng_hardware.core.events import PendingEvent, Skip, WorkerEvent, parse_message
from releng_hardware.tools.simulate import (BAD_PUSH_LABEL, BAD_PUSH_LASTS, POOLS, Message,
                                      QueueSimulator, backlog, fleet, live, slugid)
from tests.conftest import NOW


def test_slugids_match_taskclusters_pattern():
    import random
    rng = random.Random(7)
    pattern = re.compile(r"^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$")
    assert all(pattern.match(slugid(rng)) for _ in range(1000))


def test_fleet_spreads_over_pools_and_datacenters():
    machines = fleet(60)
    assert len({(m.worker_group, m.worker_id) for m in machines}) == 60
    assert {m.worker_group for m in machines} == {"mdc1", "mdc2"}
    assert len({m.worker_type for m in machines}) == 4


def test_every_simulated_message_parses_with_nothing_malformed():
    messages = backlog(3000, machines=50, end=NOW)
    outcomes = [parse_message(m.exchange, m.routing_key, m.encoded(), NOW) for m in messages]
    kinds = Counter(type(o).__name__ if not isinstance(o, WorkerEvent) else o.state for o in outcomes)
    assert not [o for o in outcomes if isinstance(o, Skip) and o.malformed]
    assert set(kinds) >= {"PendingEvent", "running", "completed", "failed", "exception"}
    assert kinds["Skip"] == sum(1 for o in outcomes if isinstance(o, Skip) and o.reason == "no-worker") > 0


def test_routing_key_agrees_with_the_body():
    for message in backlog(500, machines=10, end=NOW):
        _, task_id, run_id, group, worker, provisioner, worker_type, _, _ = message.routing_key.split(".")
        body = message.body
        assert (task_id, int(run_id)) == (body["status"]["taskId"], body["runId"])
        assert (provisioner, worker_type) == ("releng-hardware", body["status"]["workerType"])
        assert group == body.get("workerGroup", "_") and worker == body.get("workerId", "_")


def test_event_times_of_one_machine_never_go_back_in_a_clean_stream():
    last: dict[str, datetime] = {}
    for message in backlog(2000, machines=20, end=NOW):
        event = parse_message(message.exchange, message.routing_key, message.encoded(), NOW)
        if isinstance(event, WorkerEvent):
            assert event.lastseen >= last.get(event.machine_id, event.lastseen)
            last[event.machine_id] = event.lastseen


def test_backlog_adds_the_asked_share_of_redeliveries():
    messages = backlog(1000, machines=20, end=NOW, duplicate_rate=0.25, reorder_window=50)
    keys = Counter((m.exchange, m.routing_key) for m in messages)
    assert len(messages) == 1000
    assert 150 <= sum(count - 1 for count in keys.values()) <= 250


def test_live_mode_sends_history_at_once_then_paces_by_event_time():
    slept: list[float] = []
    stream = live(fleet(4), NOW, history=timedelta(hours=1), dead_share=0, sleep=slept.append)
    history = list(itertools.takewhile(lambda _: not slept, stream))
    assert len(history) > 20 and not slept[1:]
    assert isinstance(parse_message(history[0].exchange, history[0].routing_key, history[0].encoded(),
                                    NOW), PendingEvent)
    list(itertools.islice(stream, 10))
    assert len(slept) >= 5 and all(0 < seconds < 300 for seconds in slept)


def test_dead_machines_stop_working_and_leave_work_waiting():
    machines = fleet(40)
    simulator = QueueSimulator(machines, NOW - timedelta(hours=12), dead_share=0.25,
                               dies_within=timedelta(hours=12))
    seen: dict[str, datetime] = {}
    for moment, message in simulator.messages():
        if moment > NOW:
            break
        event = parse_message(message.exchange, message.routing_key, message.encoded(), NOW)
        if isinstance(event, WorkerEvent):
            seen[event.machine_id] = moment
    dead = {f"{m.worker_group}:{m.worker_id}" for m in simulator.dies_at}
    assert 4 <= len(dead) <= 18
    for machine in machines:
        machine_id = f"{machine.worker_group}:{machine.worker_id}"
        if machine_id in dead:
            assert seen.get(machine_id, NOW - timedelta(days=1)) <= simulator.dies_at[machine] + timedelta(hours=1)
        else:
            assert seen[machine_id] > NOW - timedelta(hours=1)


def test_live_fleet_shows_every_problem_once_recorded(store):
    from releng_hardware.core.config import Config
    from releng_hardware.core.problems import PROBLEMS
    from releng_hardware.views.reads import read_fleet

    simulator = QueueSimulator(fleet(40), NOW - timedelta(hours=12), dead_share=0.1, fault_share=0.15,
                               task_seconds=(20, 120))
    events = []
    for moment, message in simulator.messages():
        if moment > NOW:
            break
        event = parse_message(message.exchange, message.routing_key, message.encoded(), NOW)
        if isinstance(event, (WorkerEvent, PendingEvent)):
            events.append(event)
    for start in range(0, len(events), 500):
        store.record(events[start:start + 500], now=NOW)
    seen_ids = [record.machine_id for record in store.machines()]
    # an inventory that misses one machine seen and lists one never seen gives its two problems
    store.update_inventory(lambda _: {**dict.fromkeys(seen_ids[1:]), "mdc1:t-never-seen-1": None})
    simulated = read_fleet(store, Config(), NOW)
    machines = simulated.machines + simulated.never_seen
    by_problem = Counter(code for machine in machines for code in machine["problems"])
    assert set(by_problem) == set(PROBLEMS)
    healthy = sum(not machine["problems"] for machine in machines)
    assert healthy >= len(machines) // 2
    kinds = Counter(kind for kind, _ in simulator.faults.values())
    assert set(kinds) == {"dies_mid_task", "black_hole", "hangs", "flaky", "slow"}


def simulated_events(simulator: QueueSimulator, until: datetime) -> tuple[list, list[Message]]:
    """The events (worker and pending) and the messages the simulator sends up to `until`."""
    events, messages = [], []
    for moment, message in simulator.messages():
        if moment > until:
            break
        messages.append(message)
        event = parse_message(message.exchange, message.routing_key, message.encoded(), until)
        if isinstance(event, (WorkerEvent, PendingEvent)):
            events.append(event)
    return events, messages


def test_a_bad_push_fails_one_label_on_every_machine_for_an_hour_and_no_other():
    bad_push_at = NOW - timedelta(hours=3)
    simulator = QueueSimulator(fleet(40), NOW - timedelta(hours=6), task_seconds=(20, 120),
                               bad_push_at=bad_push_at)
    _, messages = simulated_events(simulator, NOW)
    resolved = [message.body for message in messages
                if message.exchange.endswith(("task-completed", "task-failed"))
                and message.body["task"]["tags"]["label"] == BAD_PUSH_LABEL]
    during = [body for body in resolved
              if bad_push_at <= datetime.fromisoformat(body["status"]["runs"][-1]["resolved"][:-1])
              < bad_push_at + BAD_PUSH_LASTS]
    assert len(during) >= 20 and {body["status"]["state"] for body in during} == {"failed"}
    assert len({(body["workerGroup"], body["workerId"]) for body in during}) >= 10
    # before and after it, the label passes on healthy machines
    healthy = {(m.worker_group, m.worker_id) for m in simulator.machines if m not in simulator.faults}
    outside = [body["status"]["state"] for body in resolved
               if body not in during and (body["workerGroup"], body["workerId"]) in healthy]
    assert outside and set(outside) == {"completed"}


def test_a_bad_push_is_the_tasks_fault_on_labels_not_the_machines(store):
    from releng_hardware.core.config import Config
    from releng_hardware.views.labels import default_min_machines, failing_labels
    from releng_hardware.views.reads import read_fleet

    config = Config()
    simulator = QueueSimulator(fleet(40), NOW - timedelta(hours=12), fault_share=0.15,
                               task_seconds=(20, 120), bad_push_at=NOW - timedelta(minutes=30))
    events, _ = simulated_events(simulator, NOW)
    for start in range(0, len(events), 500):
        store.record(events[start:start + 500], now=NOW)
    labels = failing_labels(store.failing_labels(NOW), NOW, config.peer_window,
                            config.taskcluster_root_url,
                            min_machines=default_min_machines(config.peer_failures))
    assert labels[0]["label"] == BAD_PUSH_LABEL and labels[0]["machines_failed"] >= 8
    # every machine of the pool that ran it failed it, but none is failing for it
    healthy = {f"{m.worker_group}:{m.worker_id}" for m in simulator.machines
               if m.worker_type == POOLS[0][0] and m not in simulator.faults}
    machines = {m["id"]: m for m in read_fleet(store, config, NOW).machines}
    hit = 0
    for machine_id in healthy:
        record = store.machine(machine_id)
        assert record is not None
        bad = [run for run in record.history if run.label == BAD_PUSH_LABEL
               and run.state == "failed"]
        assert all(run.attribution == "task" for run in bad), machine_id
        hit += bool(bad)
        assert not {"consecutive_failures", "low_success_rate", "fails_where_others_pass"} & set(
            machines[machine_id]["problems"]), machine_id
    assert hit >= len(healthy) // 2 >= 4
