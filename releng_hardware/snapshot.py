"""The reads behind every view: the store read once, then the pure fleet views applied at `now`."""

from __future__ import annotations

from datetime import datetime

from .config import Config
from .fleet import busy_queues, machine_json, recent_tasks
from .problems import Thresholds
from .store import MachineRecord, Store


def read_fleet(store: Store, config: Config, now: datetime,
               stale_after: float | None = None) -> tuple[list[dict], dict[str, int]]:
    """Every machine as the API shows it, and the pending tasks per queue, at `now`."""
    pending = store.pending_counts(now)
    busy = busy_queues(pending)
    limits = Thresholds.from_config(config, stale_after)
    machines = [machine_json(record, now, config.taskcluster_root_url, busy, limits)
                for record in store.machines()]
    return machines, pending


def read_machine(store: Store, config: Config, record: MachineRecord, now: datetime) -> dict:
    """One machine as the API shows it at `now`, with its recent tasks, judged against the work
    waiting now."""
    busy = busy_queues(store.pending_counts(now))
    machine = machine_json(record, now, config.taskcluster_root_url, busy,
                           Thresholds.from_config(config))
    machine["recent_tasks"] = recent_tasks(record.history, config.recent_tasks,
                                           config.taskcluster_root_url)
    return machine
