"""A realistic Taskcluster queue for a made-up hardware fleet, published on a local broker."""

from __future__ import annotations

import base64
import heapq
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator

import orjson
from kombu import Connection, Exchange, Producer

from ..core.events import EXCHANGE_PREFIX, EXCHANGES
from ..core.identifiers import queue_id

# (worker type, hostname pattern, datacenters) modelled on the releng-hardware pools
POOLS = (
    ("gecko-t-linux-talos", "t-linux64-ms-{:03d}", ("mdc1", "mdc2")),
    ("gecko-t-win10-64-hw", "t-w1064-ms-{:03d}", ("mdc1", "mdc2")),
    ("gecko-t-osx-1014", "t-mojave-r7-{:03d}", ("mdc1",)),
    ("gecko-t-osx-1015-r8", "macmini-r8-{:03d}", ("mdc2",)),
)
RESOLUTIONS = (("completed", "completed", 0.86), ("failed", "failed", 0.09),
               ("exception", "worker-shutdown", 0.03), ("exception", "claim-expired", 0.02))
# How broken hardware misbehaves, one way per faulty machine, from a moment on:
# dies in the middle of a task (the queue expires its claim), fails every task it
# takes (a black hole), hangs in a task that never ends, or crashes often.
FAULTS = ("dies_mid_task", "black_hole", "hangs", "flaky", "slow")
# Each worker type's tasks are this many jobs (task labels), the same on every push: a label
# runs on many machines, so each run has peers.
LABELS_PER_WORKER_TYPE = 12
# The one label of a worker type whose test is intermittent: a healthy machine's failures are
# all of it; its other labels pass on healthy machines.
INTERMITTENT_SUITE = 1
# A bad push breaks this label of the first pool's worker type for BAD_PUSH_LASTS: it fails on
# every machine that runs it, the task's fault and none of theirs.
BAD_PUSH_SUITE = 2
BAD_PUSH_LASTS = timedelta(hours=1)
# A slow machine's tasks take this many times as long.
SLOW_BY = 3.0
FLAKY_RESOLUTIONS = (("exception", "worker-shutdown", 0.25), ("exception", "internal-error", 0.15),
                     ("completed", "completed", 0.6))
CLAIM_TIMEOUT = timedelta(minutes=20)
# Every run fails: the loop over resolutions in _resolve ends on the only one.
ALWAYS_FAILS = RESOLUTIONS[1:2]


@dataclass(frozen=True)
class Machine:
    """A simulated worker."""

    worker_group: str
    worker_id: str
    worker_type: str


@dataclass(frozen=True)
class Message:
    """One queue message as the broker carries it."""

    exchange: str
    routing_key: str
    body: dict

    def encoded(self) -> bytes:
        """The body as the queue serialises it."""
        return orjson.dumps(self.body)


@dataclass
class _Task:
    task_id: str
    task_group_id: str
    worker_type: str
    scheduled: datetime
    deadline: datetime
    runs: list[dict] = field(default_factory=list)
    label: str | None = None


def slugid(rng: random.Random) -> str:
    """A Taskcluster slug id: a v4 UUID in URL-safe base64 without padding."""
    raw = uuid.UUID(int=rng.getrandbits(128), version=4).bytes
    return base64.urlsafe_b64encode(raw).decode()[:22]


def fleet(size: int) -> list[Machine]:
    """`size` machines spread over the pools and their datacenters."""
    machines = []
    slots = [(worker_type, pattern, dc) for worker_type, pattern, dcs in POOLS for dc in dcs]
    for number in range(size):
        worker_type, pattern, dc = slots[number % len(slots)]
        machines.append(Machine(dc, pattern.format(number // len(slots) + 1), worker_type))
    return machines


def task_label(worker_type: str, suite: int) -> str:
    """The label of a worker type's suite, as Gecko's task graph names its jobs."""
    return f"test-{worker_type}/opt-suite-{suite}"


BAD_PUSH_LABEL = task_label(POOLS[0][0], BAD_PUSH_SUITE)


def _fmt(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


def _status(task: _Task, provisioner_id: str, state: str) -> dict:
    return {
        "taskId": task.task_id,
        "provisionerId": provisioner_id,
        "workerType": task.worker_type,
        "taskQueueId": queue_id(provisioner_id, task.worker_type),
        "schedulerId": "gecko-level-3",
        "projectId": "none",
        "taskGroupId": task.task_group_id,
        "deadline": _fmt(task.deadline),
        "expires": _fmt(task.deadline + timedelta(days=28)),
        "retriesLeft": 5 - len(task.runs) + 1,
        "state": state,
        "runs": [dict(run) for run in task.runs],
    }


def _message(kind: str, task: _Task, provisioner_id: str, machine: Machine | None) -> Message:
    run_id = len(task.runs) - 1
    run = task.runs[-1]
    key_group = machine.worker_group if machine else "_"
    key_worker = machine.worker_id if machine else "_"
    routing_key = ".".join(("primary", task.task_id, str(run_id), key_group, key_worker,
                            provisioner_id, task.worker_type, "gecko-level-3", task.task_group_id))
    body: dict = {"version": 1, "status": _status(task, provisioner_id, run["state"]), "runId": run_id}
    if kind != "task-pending":
        tags = {"kind": "test", "os": task.worker_type.split("-")[2]}
        if task.label:
            tags["label"] = task.label
        body["task"] = {"tags": tags}
    if machine:
        body["workerGroup"], body["workerId"] = machine.worker_group, machine.worker_id
    if kind == "task-running":
        body["takenUntil"] = run["takenUntil"]
    return Message(EXCHANGE_PREFIX + kind, routing_key, body)


class QueueSimulator:
    """Task lifecycles on a fleet: pending, running, then completed, failed or exception."""

    def __init__(self, machines: list[Machine], start: datetime, *, seed: int = 1,
                 provisioner_id: str = "releng-hardware", task_seconds: tuple[float, float] = (60, 1800),
                 no_worker_rate: float = 0.01, dead_share: float = 0.0,
                 dies_within: timedelta = timedelta(hours=12), fault_share: float = 0.0,
                 bad_push_at: datetime | None = None) -> None:
        self.machines = machines
        # from this moment for BAD_PUSH_LASTS every run of BAD_PUSH_LABEL fails
        self.bad_push_at = bad_push_at
        self.rng = random.Random(seed)
        # a share of the fleet stops working at some point, as broken hardware does
        self.dies_at = {machine: start + dies_within * self.rng.random()
                        for machine in machines if self.rng.random() < dead_share}
        # and another share goes wrong, each of the FAULTS ways in turn, early enough in
        # `dies_within` for a hung task to have hung for hours by its end
        self.faults: dict[Machine, tuple[str, datetime]] = {}
        if fault_share:
            healthy = [machine for machine in machines if machine not in self.dies_at]
            faulty = self.rng.sample(healthy, min(len(healthy), round(fault_share * len(machines))))
            for kind, machine in zip(itertools.cycle(FAULTS), faulty):
                self.faults[machine] = (kind, start + dies_within * self.rng.uniform(0, 0.6))
        self.provisioner_id = provisioner_id
        self.task_seconds = task_seconds
        self.no_worker_rate = no_worker_rate
        self._sequence = itertools.count()
        self._heap: list[tuple[datetime, int, Callable[[datetime], list[Message]]]] = []
        for machine in machines:
            self._at(start + timedelta(seconds=self.rng.uniform(0, 60)), self._next_task(machine))

    def _at(self, moment: datetime, action: Callable[[datetime], list[Message]]) -> None:
        heapq.heappush(self._heap, (moment, next(self._sequence), action))

    def messages(self) -> Iterator[tuple[datetime, Message]]:
        """An endless stream of (event time, message) in event-time order."""
        while self._heap:
            moment, _, action = heapq.heappop(self._heap)
            for message in action(moment):
                yield moment, message

    def _next_task(self, machine: Machine) -> Callable[[datetime], list[Message]]:
        def schedule(now: datetime) -> list[Message]:
            rng = self.rng
            task = _Task(slugid(rng), slugid(rng), machine.worker_type, now,
                         now + timedelta(days=1),
                         label=task_label(machine.worker_type,
                                          rng.randrange(LABELS_PER_WORKER_TYPE) + 1))
            out = []
            if rng.random() < self.no_worker_rate:
                out.append(self._deadline_without_worker(machine.worker_type, now))
            task.runs.append({"runId": 0, "state": "pending", "reasonCreated": "scheduled",
                              "scheduled": _fmt(now)})
            out.append(_message("task-pending", task, self.provisioner_id, None))
            if machine in self.dies_at and now >= self.dies_at[machine]:
                return out  # the task waits for a worker that never comes
            self._at(now + timedelta(seconds=rng.uniform(1, 30)), self._start(machine, task))
            return out
        return schedule

    def _fault(self, machine: Machine, now: datetime) -> str | None:
        kind, since = self.faults.get(machine, (None, now))
        return kind if now >= since else None

    def _start(self, machine: Machine, task: _Task) -> Callable[[datetime], list[Message]]:
        def start(now: datetime) -> list[Message]:
            task.runs[-1].update({"state": "running", "workerGroup": machine.worker_group,
                                  "workerId": machine.worker_id, "started": _fmt(now),
                                  "takenUntil": _fmt(now + CLAIM_TIMEOUT)})
            fault = self._fault(machine, now)
            if fault == "dies_mid_task":
                self._at(now + CLAIM_TIMEOUT, self._claim_expires(machine, task))
            elif fault == "black_hole":
                self._at(now + timedelta(seconds=self.rng.uniform(5, 60)),
                         self._resolve(machine, task, RESOLUTIONS[1:2]))
            elif fault != "hangs":  # a hung task never ends, and its machine takes no other
                took = self.rng.uniform(*self.task_seconds) * (SLOW_BY if fault == "slow" else 1)
                self._at(now + timedelta(seconds=took),
                         self._resolve(machine, task,
                                       FLAKY_RESOLUTIONS if fault == "flaky" else RESOLUTIONS))
            return [_message("task-running", task, self.provisioner_id, machine)]
        return start

    def bad_push_broke(self, label: str | None, now: datetime) -> bool:
        """Whether a run of `label` ending at `now` fails for the bad push."""
        return (self.bad_push_at is not None and label == BAD_PUSH_LABEL
                and self.bad_push_at <= now < self.bad_push_at + BAD_PUSH_LASTS)

    def _claim_expires(self, machine: Machine, task: _Task) -> Callable[[datetime], list[Message]]:
        def expire(now: datetime) -> list[Message]:
            # the worker died and stopped reclaiming: the queue resolves the run, and the
            # machine is never heard of again
            task.runs[-1].update({"state": "exception", "reasonResolved": "claim-expired",
                                  "resolved": _fmt(now)})
            return [_message("task-exception", task, self.provisioner_id, machine)]
        return expire

    def _resolve(self, machine: Machine, task: _Task,
                 resolutions: tuple[tuple[str, str, float], ...] = RESOLUTIONS,
                 ) -> Callable[[datetime], list[Message]]:
        def resolve(now: datetime) -> list[Message]:
            roll, state, reason = self.rng.random(), "completed", "completed"
            broken = self.bad_push_broke(task.label, now)
            passes = (not broken and resolutions is RESOLUTIONS and task.label is not None
                      and not task.label.endswith(f"-{INTERMITTENT_SUITE}"))
            # the loop's last state and reason are the roll's outcome
            for state, reason, share in (  # noqa: B007
                    () if passes else ALWAYS_FAILS if broken else resolutions):
                if roll < share:
                    break
                roll -= share
            task.runs[-1].update({"state": state, "reasonResolved": reason, "resolved": _fmt(now)})
            out = [_message(f"task-{state}", task, self.provisioner_id, machine)]
            if reason == "worker-shutdown" and len(task.runs) < 3:
                # the queue retries the task as a new run, which this machine takes again
                task.runs.append({"runId": len(task.runs), "state": "pending",
                                  "reasonCreated": "retry", "scheduled": _fmt(now)})
                self._at(now + timedelta(seconds=self.rng.uniform(30, 120)), self._start(machine, task))
            else:
                self._at(now + timedelta(seconds=self.rng.uniform(5, 120)), self._next_task(machine))
            return out
        return resolve

    def _deadline_without_worker(self, worker_type: str, now: datetime) -> Message:
        task = _Task(slugid(self.rng), slugid(self.rng), worker_type, now - timedelta(days=1), now)
        task.runs.append({"runId": 0, "state": "exception", "reasonCreated": "exception",
                          "scheduled": _fmt(now), "reasonResolved": "deadline-exceeded",
                          "resolved": _fmt(now)})
        return _message("task-exception", task, self.provisioner_id, None)


def backlog(count: int, machines: int = 1000, *, end: datetime, seed: int = 1,
            duplicate_rate: float = 0.0, reorder_window: int = 0,
            provisioner_id: str = "releng-hardware") -> list[Message]:
    """`count` messages of a day ending at `end`; a share of them redeliveries, locally shuffled."""
    simulator = QueueSimulator(fleet(machines), end - timedelta(hours=24), seed=seed,
                               provisioner_id=provisioner_id)
    unique = max(1, round(count / (1 + duplicate_rate)))
    messages = [message for _, message in itertools.islice(simulator.messages(), unique)]
    rng = random.Random(seed + 1)
    while len(messages) < count:
        # a redelivery comes after its original, somewhere later in the stream
        original = rng.randrange(len(messages))
        messages.insert(rng.randint(original + 1, len(messages)), messages[original])
    if reorder_window > 1:
        for start in range(0, len(messages), reorder_window):
            window = messages[start:start + reorder_window]
            rng.shuffle(window)
            messages[start:start + reorder_window] = window
    return messages[:count]


def live(machines: list[Machine], start: datetime, *, seed: int = 1,
         task_seconds: tuple[float, float] = (20, 120), provisioner_id: str = "releng-hardware",
         history: timedelta = timedelta(hours=12), dead_share: float = 0.1,
         fault_share: float = 0.15, bad_push_since: timedelta | None = BAD_PUSH_LASTS / 2,
         sleep: Callable[[float], None] = time.sleep) -> Iterator[Message]:
    """The last `history` at once (some machines dying or going wrong on the way), then messages
    in real time; a bad push began `bad_push_since` before `start` (None: none)."""
    # half of the bad push in the history, half live: the dashboard opens on it, and it ends
    # while someone watches
    simulator = QueueSimulator(machines, start - history, seed=seed, task_seconds=task_seconds,
                               provisioner_id=provisioner_id, dead_share=dead_share,
                               dies_within=history, fault_share=fault_share,
                               bad_push_at=None if bad_push_since is None else start - bad_push_since)
    started = time.monotonic()
    for moment, message in simulator.messages():
        wait = (moment - start).total_seconds() - (time.monotonic() - started)
        if wait > 0:
            sleep(wait)
        yield message


def declare_exchanges(channel: Any) -> None:
    """Declare the queue service's topic exchanges, as the real queue has them (local brokers only)."""
    for name in EXCHANGES:
        Exchange(EXCHANGE_PREFIX + name, type="topic", durable=True)(channel).declare()


def wait_for_queue(connection: Connection, name: str, timeout: float,
                   sleep: Callable[[float], None] = time.sleep) -> bool:
    """True once queue `name` exists (a listener has bound it), False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        channel = connection.channel()
        try:
            channel.queue_declare(name, passive=True)
            return True
        except connection.channel_errors:
            if time.monotonic() >= deadline:
                return False
            sleep(0.5)
        finally:
            try:
                channel.close()
            except Exception:  # a failed passive declare has closed it already
                pass


def publish(connection: Connection, messages: Iterable[Message], *,
            should_stop: Callable[[], bool] = lambda: False) -> int:
    """Publish messages on the queue service's exchanges; the number published."""
    declare_exchanges(connection.default_channel)
    producer = Producer(connection.default_channel)
    published = 0
    for message in messages:
        if should_stop():
            break
        producer.publish(message.encoded(), exchange=message.exchange,
                         routing_key=message.routing_key, content_type="application/json",
                         content_encoding="utf-8", delivery_mode=2, retry=True)
        published += 1
    return published
