"""Pure parsing of Taskcluster queue messages: a message in, an event or a Skip out.

No I/O, no clock, no logging: the listener passes the receipt time in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, NamedTuple, TypeGuard

import orjson

from .identifiers import is_identifier, machine_id
from .times import MAX_CLOCK_SKEW, parse_time

EXCHANGE_PREFIX = "exchange/taskcluster-queue/v1/"
JSON_CONTENT_TYPE = "application/json"
# Exchange suffix -> the state a run is in after it.
WORKER_EXCHANGES = {
    "task-running": "running",
    "task-completed": "completed",
    "task-failed": "failed",
    "task-exception": "exception",
}
PENDING_EXCHANGE = "task-pending"
EXCHANGES = (PENDING_EXCHANGE, *WORKER_EXCHANGES)
# Exceptions the worker reports itself; the queue resolves runs with any other
# reason (claim-expired, deadline-exceeded, canceled, superseded) without it.
WORKER_EXCEPTION_REASONS = frozenset({
    "worker-shutdown", "malformed-payload", "resource-unavailable", "internal-error",
    "intermittent-task",
})
DEFAULT_CLAIM_TIMEOUT = timedelta(minutes=20)

# Taskcluster's own schema patterns (v1 task-status and message schemas).
_IS_SLUGID = re.compile(
    r"^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$").fullmatch
_IS_REASON = re.compile(r"^[a-z0-9-]{1,64}$").fullmatch
MAX_BODY_BYTES = 256 * 1024
MAX_RUN_ID = 1000
# A task label (task.tags.label) longer than this, or holding a control character, is no label:
# the tag is free text, and the store keeps it per label and shows it.
MAX_LABEL_LENGTH = 255
_HAS_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]").search
# A fleet's provisioners, worker types, worker groups and worker ids are few and come again in
# every message: each is held to the identifier rule once, then found in this memo of the
# good ones, emptied when it holds KNOWN_IDENTIFIERS_MAX (a pure check's memo, bounded).
KNOWN_IDENTIFIERS_MAX = 50_000
_known_identifiers: set[str] = set()


# The events are NamedTuples, not frozen dataclasses: the listener builds one per message, and
# a frozen dataclass takes five times as long to build.
class WorkerEvent(NamedTuple):
    """A run started or resolved on a worker: what the store records per machine."""

    worker_group: str
    worker_id: str
    provisioner_id: str
    worker_type: str
    task_id: str
    run_id: int
    state: str
    reason_resolved: str | None
    lastseen: datetime
    deadline: datetime | None
    time_from_message: bool
    # when the run started, as the message says (None when it does not)
    started: datetime | None = None
    # the run's own time (started for task-running, resolved for a resolution);
    # None means the same as lastseen
    event_time: datetime | None = None
    # the task's tags.label (the same job on every push), None when it has none
    label: str | None = None

    @property
    def machine_id(self) -> str:
        """`$DC:$HOSTNAME`, the machine's key everywhere."""
        return machine_id(self.worker_group, self.worker_id)


class PendingEvent(NamedTuple):
    """A run is waiting for a worker of this worker type."""

    provisioner_id: str
    worker_type: str
    task_id: str
    run_id: int
    scheduled: datetime
    deadline: datetime


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a message records nothing; `malformed` tells broken input from irrelevant input."""

    reason: str
    malformed: bool = False
    detail: str = ""


Event = WorkerEvent | PendingEvent


class _Malformed(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def bindings(provisioner_ids: Iterable[str], *, with_pending: bool = True) -> list[tuple[str, str]]:
    """(exchange, routing key pattern) pairs that select the provisioners' messages."""
    names = EXCHANGES if with_pending else tuple(WORKER_EXCHANGES)
    return [
        (EXCHANGE_PREFIX + name, f"primary.*.*.*.*.{provisioner}.*.*.*.#")
        for provisioner in provisioner_ids
        for name in names
    ]


def parse_message(
    exchange: str,
    routing_key: str,
    body: bytes | str | dict[str, Any],
    received_at: datetime,
    provisioner_ids: Iterable[str] = ("releng-hardware",),
    content_type: str | None = None,
    claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT,
) -> Event | Skip:
    """Turn one queue message into a WorkerEvent, a PendingEvent or a Skip."""
    name = exchange[len(EXCHANGE_PREFIX):] if exchange.startswith(EXCHANGE_PREFIX) else ""
    if name not in EXCHANGES:
        return Skip("unknown-exchange", detail=exchange[:100])
    if content_type and content_type != JSON_CONTENT_TYPE \
            and content_type.split(";")[0].strip().lower() != JSON_CONTENT_TYPE:
        return Skip("wrong-content-type", malformed=True, detail=content_type[:100])
    try:
        return _parse(name, routing_key or "", _decode(body), received_at, provisioner_ids,
                      claim_timeout)
    except _Malformed as exc:
        return Skip(exc.reason, malformed=True, detail=exc.detail)


def _decode(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    if len(body) > MAX_BODY_BYTES:
        raise _Malformed("too-large", f"{len(body)} bytes")
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Malformed("not-json", str(exc)) from None
    if not isinstance(decoded, dict):
        raise _Malformed("not-an-object", type(decoded).__name__)
    return decoded


def _parse(name: str, routing_key: str, body: dict[str, Any], received_at: datetime,
           provisioner_ids: Iterable[str], claim_timeout: timedelta) -> Event | Skip:
    # The listener's own CPU bounds its drain rate, and this runs for every message: it reads
    # each field once, in line, and splits the routing key only for a field the body lacks.
    status = body.get("status")
    if not isinstance(status, dict):
        raise _Malformed("missing-field", "status")
    provisioner_id, worker_type = status.get("provisionerId"), status.get("workerType")
    if provisioner_id is None or worker_type is None:
        task_queue_id = status.get("taskQueueId")
        if isinstance(task_queue_id, str) and task_queue_id.count("/") == 1:
            provisioner_id, worker_type = task_queue_id.split("/")
    provisioner_id = _present(routing_key, "provisionerId", provisioner_id)
    worker_type = _present(routing_key, "workerType", worker_type)
    if not _is_identifier(provisioner_id):
        raise _bad_identifier("provisionerId", provisioner_id)
    if not _is_identifier(worker_type):
        raise _bad_identifier("workerType", worker_type)
    if provisioner_id not in provisioner_ids:
        return Skip("other-provisioner", detail=provisioner_id)
    task_id = _present(routing_key, "taskId", status.get("taskId"))
    if not isinstance(task_id, str) or not _IS_SLUGID(task_id):
        raise _Malformed("bad-identifier", f"taskId {task_id!r:.60}")
    run_id = body.get("runId")
    if run_id is None:
        run_id = _routing_key_field(routing_key, "runId")
        # isdigit() also takes digits such as "²" that int() refuses
        if run_id is not None and run_id.isascii() and run_id.isdigit():
            run_id = int(run_id)
    if isinstance(run_id, bool) or not isinstance(run_id, int) or not 0 <= run_id <= MAX_RUN_ID:
        raise _Malformed("bad-run-id", f"runId {run_id!r:.60}")
    runs = status.get("runs")
    if not isinstance(runs, list):
        raise _Malformed("missing-field", "status.runs")
    if run_id >= len(runs) or not isinstance(runs[run_id], dict):
        raise _Malformed("bad-run-id", f"runId {run_id} with {len(runs)} runs")
    run = runs[run_id]
    deadline = _optional_time(status.get("deadline"), "status.deadline")

    if name == PENDING_EXCHANGE:
        if deadline is None:
            raise _Malformed("missing-field", "status.deadline")
        scheduled = _optional_time(run.get("scheduled"), "scheduled")
        return PendingEvent(provisioner_id, worker_type, task_id, run_id,
                            scheduled or received_at, deadline)

    worker_group = _present(routing_key, "workerGroup", body.get("workerGroup"), run.get("workerGroup"))
    worker_id = _present(routing_key, "workerId", body.get("workerId"), run.get("workerId"))
    if worker_group is None or worker_id is None:
        return Skip("no-worker", detail=task_id)
    if not _is_identifier(worker_group):
        raise _bad_identifier("workerGroup", worker_group)
    if not _is_identifier(worker_id):
        raise _bad_identifier("workerId", worker_id)

    state = WORKER_EXCHANGES[name]
    running = state == "running"
    moment = _optional_time(run.get("started" if running else "resolved"), "run time")
    if moment is not None and moment - received_at > MAX_CLOCK_SKEW:
        raise _Malformed("future-time", moment.isoformat())
    reason = None if running else run.get("reasonResolved")
    if reason is not None and not (isinstance(reason, str) and _IS_REASON(reason)):
        raise _Malformed("bad-field", f"reasonResolved {reason!r:.60}")
    event_time = received_at if moment is None else moment
    started = event_time if running else _optional_time(run.get("started"), "started")
    lastseen = event_time
    if resolved_by_queue(state, reason):
        taken_until = _optional_time(run.get("takenUntil"), "takenUntil")
        lastseen = machine_lastseen(event_time, started, taken_until, claim_timeout)
    return WorkerEvent(worker_group, worker_id, provisioner_id, worker_type, task_id, run_id, state,
                       reason, lastseen, deadline, moment is not None, started, event_time,
                       task_label(body.get("task")))


def task_label(task: Any) -> str | None:
    """The message's task.tags.label when it is a usable one; None for none or a bad one.

    A bad label is not a malformed message: the run is recorded, only without a label.
    """
    # the tags are free text the task's author sets: nothing else of them is read
    if task.__class__ is not dict:
        return None
    tags = task.get("tags")
    if tags.__class__ is not dict:
        return None
    label = tags.get("label")
    if (label.__class__ is not str or not label or len(label) > MAX_LABEL_LENGTH
            or _HAS_CONTROL(label)):
        return None
    return label


def resolved_by_queue(state: str, reason: str | None) -> bool:
    """True for a run the queue resolved without its worker (an exception it did not report)."""
    return state == "exception" and reason not in WORKER_EXCEPTION_REASONS


def machine_lastseen(resolved: datetime, started: datetime | None, taken_until: datetime | None,
                     claim_timeout: timedelta) -> datetime:
    """When the machine last acted in a run the queue resolved: its last claim, never after `resolved`.

    The worker reclaims its run every claim timeout until `takenUntil`, so its last
    reclaim was `takenUntil - claim_timeout`; with neither time known, `resolved` stands.
    """
    last_claim = None if taken_until is None else taken_until - claim_timeout
    evidence = [moment for moment in (started, last_claim) if moment is not None]
    return min(max(evidence), resolved) if evidence else resolved


_KEY_NAMES = ("taskId", "runId", "workerGroup", "workerId", "provisionerId", "workerType")


def _routing_key_field(routing_key: str, name: str) -> str | None:
    """One of the routing key's fields, None when absent; split anew each time, since only a
    message whose body lacks a field (a rare one) asks."""
    parts = routing_key.split(".")
    if len(parts) < 7 or parts[0] != "primary":
        return None
    value = parts[1 + _KEY_NAMES.index(name)]
    # '_' is how the queue writes an absent field into a routing key.
    return None if value == "_" else value


def _present(routing_key: str, name: str, value: Any, fallback: Any = None) -> Any:
    """The first of the body's values that is present (neither None nor ''), else the routing
    key's."""
    if value is not None and value != "":
        return value
    if fallback is not None and fallback != "":
        return fallback
    return _routing_key_field(routing_key, name)


def _is_identifier(value: object) -> TypeGuard[str]:
    """identifiers.is_identifier, remembering the identifiers it accepted."""
    if value.__class__ is str and value in _known_identifiers:
        return True
    if not is_identifier(value):
        return False
    if len(_known_identifiers) >= KNOWN_IDENTIFIERS_MAX:
        _known_identifiers.clear()
    _known_identifiers.add(value)
    return True


def _bad_identifier(name: str, value: Any) -> _Malformed:
    return _Malformed("bad-identifier", f"{name} {value!r:.60}")


def _optional_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise _Malformed("bad-time", f"{name} {value!r:.60}") from None
