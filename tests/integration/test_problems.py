"""Machine history and problems end to end: messages on the real RabbitMQ, the listener, Redis, the API."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from releng_hardware.core.events import EXCHANGE_PREFIX
from releng_hardware.tools.simulate import Message, backlog
from releng_hardware.store.machines import Store
from releng_hardware.core.times import format_lastseen, utcnow
from releng_hardware.web.app import create_app
from tests.conftest import wait_for
from tests.integration.support import diff_states, machine_state, reference_state
from tests.unit.web.test_api_problems import SICK_FLEET_PROBLEMS

WORKER_TYPE = "gecko-t-linux-talos"


def _time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


class Machines:
    """Hand-made queue messages for machines of the test's provisioner."""

    def __init__(self, provisioner_id: str) -> None:
        self.provisioner_id = provisioner_id
        self.tasks = 0

    def task_id(self) -> str:
        self.tasks += 1
        return f"TASK{self.tasks:04d}QAGAAAAAAAAAAA"

    def message(self, kind: str, host: str, task_id: str, run: dict[str, Any],
                worker_type: str = WORKER_TYPE) -> Message:
        status = {"taskId": task_id, "provisionerId": self.provisioner_id, "workerType": worker_type,
                  "deadline": _time(utcnow() + timedelta(days=1)), "state": run["state"],
                  "runs": [{"runId": 0, "reasonCreated": "scheduled", **run}]}
        body: dict[str, Any] = {"version": 1, "status": status, "runId": 0}
        worker = ("_", "_")
        if kind != "task-pending":
            body["workerGroup"], body["workerId"] = worker = ("mdc1", host)
        routing_key = ".".join(("primary", task_id, "0", *worker, self.provisioner_id, worker_type,
                                "gecko-level-3", task_id))
        return Message(EXCHANGE_PREFIX + kind, routing_key, body)

    def run(self, host: str, *, started: datetime, resolved: datetime | None = None,
            state: str = "completed", reason: str | None = None, taken_until: datetime | None = None,
            worker_type: str = WORKER_TYPE) -> list[Message]:
        """A run's task-running and, unless it still runs, its resolution."""
        task_id = self.task_id()
        run = {"state": "running", "workerGroup": "mdc1", "workerId": host, "started": _time(started),
               "takenUntil": _time(taken_until or started + timedelta(minutes=20))}
        messages = [self.message("task-running", host, task_id, dict(run), worker_type)]
        if resolved is not None:
            run.update(state=state, reasonResolved=reason or state, resolved=_time(resolved))
            messages.append(self.message(f"task-{state}", host, task_id, run, worker_type))
        return messages

    def pending(self, worker_type: str) -> Message:
        """A task waiting for a worker of this type."""
        return self.message("task-pending", "", self.task_id(),
                            {"state": "pending", "scheduled": _time(utcnow())}, worker_type)


def processed(store: Store) -> int:
    return int(store.listener_status().get("processed", 0))


def deliver(messages: list[Message], store: Store, listener_thread: Any, publish: Any) -> None:
    listener_thread()
    publish(messages)
    wait_for(lambda: processed(store) >= len(messages), 30, "the listener did not process every message")


def test_each_problem_is_found_from_real_messages(amqp_config, real_store, real_redis, listener_thread,
                                                  publish, provisioner_id):
    now, make = utcnow(), Machines(provisioner_id)
    minutes = lambda n: now - timedelta(minutes=n)  # noqa: E731
    messages: list[Message] = []
    for i in range(8):
        messages += make.run("t-healthy", started=minutes(100 - 10 * i), resolved=minutes(95 - 10 * i))
    for i in range(5):
        messages += make.run("t-black-hole", started=minutes(60 - 10 * i), resolved=minutes(59 - 10 * i),
                             state="failed")
    for i in range(3):
        messages += make.run("t-flaky", started=minutes(90 - 20 * i), resolved=minutes(85 - 20 * i),
                             state="exception", reason="internal-error")
        messages += make.run("t-flaky", started=minutes(80 - 20 * i), resolved=minutes(75 - 20 * i))
    messages += make.run("t-lost", started=minutes(50), resolved=minutes(30), state="exception",
                         reason="claim-expired", taken_until=minutes(30))
    messages += make.run("t-hung", started=minutes(4 * 60))
    messages += make.run("t-gone", started=minutes(8 * 60), resolved=minutes(7 * 60),
                         worker_type="gecko-t-win10-64-hw")
    messages.append(make.pending("gecko-t-win10-64-hw"))
    deliver(messages, real_store, listener_thread, publish)

    client = create_app(amqp_config, redis=real_redis).test_client()
    found = {m["machine"]: m["problems"] for m in client.get("/machines").get_json()}
    assert found == SICK_FLEET_PROBLEMS
    assert [m["machine"] for m in client.get("/machines?problem=lost_mid_task").get_json()] == ["t-lost"]
    assert sum(client.get("/summary").get_json()["totals"]["problems"].values()) == 7
    flaky = client.get("/machines/mdc1:t-flaky").get_json()["recent_tasks"]
    assert [(t["state"], t["reason_resolved"]) for t in flaky] == \
        [("completed", "completed"), ("exception", "internal-error")] * 3


def test_lastseen_of_runs_the_queue_resolved_is_the_machine_s_last_claim(
        amqp_config, real_store, listener_thread, publish, provisioner_id):
    now, make = utcnow(), Machines(provisioner_id)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the queue's precision
    minutes = lambda n: now - timedelta(minutes=n)  # noqa: E731
    messages = [
        # reclaimed until 1h ago, so alive until 1h20m ago; the queue gave up 59m ago
        *make.run("t-died", started=minutes(180), taken_until=minutes(60), resolved=minutes(59),
                  state="exception", reason="claim-expired"),
        # canceled 2h10m ago; its last reclaim was at 2h20m ago
        *make.run("t-canceled", started=minutes(180), taken_until=minutes(120), resolved=minutes(130),
                  state="exception", reason="canceled"),
        # the worker itself reported it: alive when it did
        *make.run("t-shutdown", started=minutes(180), taken_until=minutes(120), resolved=minutes(130),
                  state="exception", reason="worker-shutdown"),
    ]
    deliver(messages, real_store, listener_thread, publish)
    lastseen = {m.machine_id.split(":")[1]: m.lastseen for m in real_store.machines()}
    assert lastseen == {"t-died": format_lastseen(minutes(80)), "t-canceled": format_lastseen(minutes(140)),
                        "t-shutdown": format_lastseen(minutes(130))}
    problems = {m["machine"]: m["problems"]
                for m in create_app(amqp_config, redis=real_store.redis).test_client()
                .get("/machines").get_json()}
    assert problems["t-died"] == ["lost_mid_task"] and problems["t-canceled"] == []


def test_resolutions_before_their_start_and_redeliveries_give_the_history_of_one_ordered_pass(
        amqp_config, real_store, real_redis, redis_prefix, listener_thread, publish, provisioner_id):
    make = Machines(provisioner_id)
    start = utcnow() - timedelta(hours=2)
    ordered: list[Message] = []
    for i in range(12):
        ordered += make.run(f"t-{i % 3}", started=start + timedelta(minutes=5 * i),
                            resolved=start + timedelta(minutes=5 * i + 4),
                            state=("completed", "failed", "exception")[i % 3],
                            reason=(None, None, "claim-expired")[i % 3])
    ordered += backlog(600, machines=10, end=utcnow(), provisioner_id=provisioner_id)
    # every resolution first, then every start, each twice, the rest shuffled
    messy = [m for m in ordered if "running" not in m.exchange] + \
        [m for m in ordered if "running" in m.exchange]
    messy = messy + random.Random(4).sample(messy, len(messy))
    deliver(messy, real_store, listener_thread, publish)

    expected = reference_state(ordered, provisioner_id, Store(real_redis, redis_prefix + "reference:"))
    actual = machine_state(real_store)
    assert actual == expected, diff_states(actual, expected)
    assert all(len(history) > 0 for _, _, history in actual.values())
