"""Pure views of the fleet: a machine as JSON, filters, sorting and the summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Container, Mapping

from .config import Config, parse_duration
from .store import MachineRecord, Store
from .times import format_lastseen, parse_time

STATES = ("running", "completed", "failed", "exception")
SORT_KEYS = ("lastseen", "-lastseen", "machine", "-machine")
CSV_COLUMNS = (
    "id", "datacenter", "machine", "lastseen", "age_seconds", "firstseen", "provisioner",
    "worker_type", "last_task_id", "last_task_run_id", "last_task_state",
    "last_task_reason_resolved", "last_task_url", "completed", "failed", "exception",
    "idle_with_work_waiting",
)


class BadParameter(ValueError):
    """A query parameter has a value the API does not accept."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name, self.problem = name, problem


@dataclass(frozen=True)
class MachineQuery:
    """The filters and order of a /machines request."""

    datacenter: str | None = None
    worker_type: str | None = None
    provisioner: str | None = None
    state: str | None = None
    stale: float | None = None
    seen_within: float | None = None
    sort: str = "machine"

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "MachineQuery":
        """Validate query parameters; BadParameter names the first bad one."""
        values: dict[str, Any] = {}
        for name in ("datacenter", "worker_type", "provisioner"):
            if name in args:
                values[name] = _identifier(name, args[name])
        if "state" in args:
            if args["state"] not in STATES:
                raise BadParameter("state", f"must be one of {', '.join(STATES)}")
            values["state"] = args["state"]
        for name in ("stale", "seen_within"):
            if name in args:
                values[name] = duration_arg(name, args[name])
        if "sort" in args:
            if args["sort"] not in SORT_KEYS:
                raise BadParameter("sort", f"must be one of {', '.join(SORT_KEYS)}")
            values["sort"] = args["sort"]
        return cls(**values)


def duration_arg(name: str, text: str) -> float:
    """A duration query parameter in seconds."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise BadParameter(name, str(exc)) from None
    if seconds > 10 * 365 * 86400:
        raise BadParameter(name, "must be at most ten years")
    return seconds


def _identifier(name: str, value: str) -> str:
    if not value or len(value) > 38 or not all(c.isascii() and (c.isalnum() or c in "-_")
                                               for c in value):
        raise BadParameter(name, "must be a Taskcluster identifier (letters, digits, - and _)")
    return value


def age_seconds(lastseen: str, now: datetime) -> float | None:
    """Seconds since lastseen (None for an unreadable stored value)."""
    try:
        return round((now - parse_time(lastseen)).total_seconds(), 3)
    except ValueError:
        return None


def _lastseen_and_age(lastseen: str, now: datetime) -> tuple[str, float | None]:
    if len(lastseen) == 26:  # the one format everything here writes: the C parser suffices
        try:
            return lastseen, round((now - datetime.fromisoformat(lastseen)).total_seconds(), 3)
        except (ValueError, TypeError):
            pass
    try:  # written by hand or by an old tool: serve the one format
        moment = parse_time(lastseen)
    except ValueError:
        return lastseen, None
    return format_lastseen(moment), round((now - moment).total_seconds(), 3)


def machine_json(record: MachineRecord, now: datetime, root_url: str,
                 busy_queues: Container[str] = (), stale_after: float | None = None) -> dict:
    """One machine as the API shows it."""
    get = record.details.get
    datacenter, _, hostname = record.machine_id.rpartition(":")
    lastseen, age = _lastseen_and_age(record.lastseen, now)
    task_id = get("task_id")
    provisioner, worker_type = get("provisioner"), get("worker_type")
    stale = age is not None and stale_after is not None and age >= stale_after
    return {
        "id": record.machine_id,
        "machine": hostname,
        "datacenter": datacenter,
        "lastseen": lastseen,
        "age_seconds": age,
        "firstseen": get("firstseen"),
        "provisioner": provisioner,
        "worker_type": worker_type,
        "last_task": None if task_id is None else {
            "task_id": task_id,
            "run_id": get("run_id"),
            "state": get("state"),
            "reason_resolved": get("reason_resolved"),
            "time": get("task_time"),
            "url": f"{root_url}/tasks/{task_id}",
        },
        "counts": {"completed": get("completed", 0), "failed": get("failed", 0),
                   "exception": get("exception", 0)},
        "stale": stale,
        "idle_with_work_waiting": stale and f"{provisioner}/{worker_type}" in busy_queues,
    }


def current_fleet(store: Store, config: Config, now: datetime,
                  stale_after: float | None = None) -> tuple[list[dict], dict[str, int]]:
    """Every machine as the API shows it, and the pending tasks per queue, at `now`."""
    pending = store.pending_counts(now)
    busy = _busy_queues(pending)
    threshold = config.stale_after if stale_after is None else stale_after
    machines = [machine_json(record, now, config.taskcluster_root_url, busy, threshold)
                for record in store.machines()]
    return machines, pending


def current_machine(store: Store, config: Config, record: MachineRecord, now: datetime) -> dict:
    """One machine as the API shows it at `now`, flagged against the work waiting now."""
    busy = _busy_queues(store.pending_counts(now))
    return machine_json(record, now, config.taskcluster_root_url, busy, config.stale_after)


def _busy_queues(pending: Mapping[str, int]) -> set[str]:
    return {queue for queue, count in pending.items() if count > 0}


def select(machines: list[dict], query: MachineQuery) -> list[dict]:
    """The machines matching every filter of the query, in its order."""
    def keep(machine: dict) -> bool:
        age = machine["age_seconds"]
        last_task = machine["last_task"]
        return (
            (query.datacenter is None or machine["datacenter"] == query.datacenter)
            and (query.worker_type is None or machine["worker_type"] == query.worker_type)
            and (query.provisioner is None or machine["provisioner"] == query.provisioner)
            and (query.state is None or (last_task is not None and last_task["state"] == query.state))
            and (query.stale is None or (age is not None and age >= query.stale))
            and (query.seen_within is None or (age is not None and age <= query.seen_within))
        )

    filtered = any(value is not None for value in (
        query.datacenter, query.worker_type, query.provisioner, query.state, query.stale,
        query.seen_within))
    selected = [machine for machine in machines if keep(machine)] if filtered else list(machines)
    field = query.sort.lstrip("-")
    if field == "machine":
        selected.sort(key=lambda machine: (machine["machine"], machine["datacenter"]),
                      reverse=query.sort.startswith("-"))
    else:
        selected.sort(key=lambda machine: (machine["lastseen"], machine["id"]),
                      reverse=query.sort.startswith("-"))
    return selected


def summary(machines: list[dict], pending: Mapping[str, int], stale_after: float) -> dict:
    """Counts per datacenter x worker type, and the work waiting per worker type."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for machine in machines:
        key = (machine["datacenter"], machine["worker_type"] or "")
        group = groups.setdefault(key, {
            "datacenter": key[0], "worker_type": key[1] or None, "provisioner": machine["provisioner"],
            "total": 0, "seen_within_1h": 0, "stale": 0, "last_task_exception": 0,
            "idle_with_work_waiting": 0, "pending_tasks": 0,
        })
        age = machine["age_seconds"]
        group["total"] += 1
        group["seen_within_1h"] += age is not None and age <= 3600
        group["stale"] += age is not None and age >= stale_after
        last_task = machine["last_task"]
        group["last_task_exception"] += last_task is not None and last_task["state"] == "exception"
        group["idle_with_work_waiting"] += machine["idle_with_work_waiting"]
    for group in groups.values():
        group["pending_tasks"] = pending.get(f"{group['provisioner']}/{group['worker_type']}", 0)
    rows = sorted(groups.values(), key=lambda group: (group["datacenter"], group["worker_type"] or ""))
    totals = {name: sum(group[name] for group in rows)
              for name in ("total", "seen_within_1h", "stale", "last_task_exception",
                           "idle_with_work_waiting")}
    return {
        "stale_after_seconds": stale_after,
        "totals": totals,
        "groups": rows,
        "pending_tasks": dict(sorted(pending.items())),
    }


def csv_row(machine: dict) -> list[Any]:
    """A machine flattened into CSV_COLUMNS."""
    task = machine["last_task"] or {}
    return [
        machine["id"], machine["datacenter"], machine["machine"], machine["lastseen"],
        machine["age_seconds"], machine["firstseen"], machine["provisioner"], machine["worker_type"],
        task.get("task_id"), task.get("run_id"), task.get("state"), task.get("reason_resolved"),
        task.get("url"), machine["counts"]["completed"], machine["counts"]["failed"],
        machine["counts"]["exception"], machine["idle_with_work_waiting"],
    ]
