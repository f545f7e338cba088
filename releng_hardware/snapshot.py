"""The reads behind every view: the store read once, then the pure fleet views applied at `now`."""

from __future__ import annotations

from datetime import datetime

from .config import Config
from .fleet import busy_queues, machine_json
from .store import MachineRecord, Store


def read_fleet(store: Store, config: Config, now: datetime,
               stale_after: float | None = None) -> tuple[list[dict], dict[str, int]]:
    """Every machine as the API shows it, and the pending tasks per queue, at `now`."""
    pending = store.pending_counts(now)
    busy = busy_queues(pending)
    threshold = config.stale_after if stale_after is None else stale_after
    machines = [machine_json(record, now, config.taskcluster_root_url, busy, threshold)
                for record in store.machines()]
    return machines, pending


def read_machine(store: Store, config: Config, record: MachineRecord, now: datetime) -> dict:
    """One machine as the API shows it at `now`, flagged against the work waiting now."""
    busy = busy_queues(store.pending_counts(now))
    return machine_json(record, now, config.taskcluster_root_url, busy, config.stale_after)
