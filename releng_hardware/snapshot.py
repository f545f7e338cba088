"""The reads behind every view: the store read once, then the pure fleet views applied at `now`."""

from __future__ import annotations

from datetime import datetime
from typing import Callable, NamedTuple

from .config import Config
from .fleet import busy_queues, machine_json, never_seen_records, recent_tasks
from .problems import Thresholds
from .store import MachineRecord, Store


class Fleet(NamedTuple):
    """Everything the views show, read once."""

    machines: list[dict]  # every machine seen, as the API shows it
    pending: dict[str, int]  # tasks waiting per `<provisioner>/<workerType>`
    never_seen: list[dict]  # the inventory's machines never seen, as the API shows them
    inventory: dict[str, str | None]  # machine id -> worker type; empty when none is loaded


def read_fleet(store: Store, config: Config, now: datetime, stale_after: float | None = None, *,
               with_never_seen: bool = True, view: Callable[..., dict] = machine_json) -> Fleet:
    """Every machine as the API shows it, the pending tasks per queue and the inventory, at `now`.

    with_never_seen=False leaves `never_seen` empty, for a view that would not show them;
    view=counted_json builds only what `summary` counts.
    """
    pending = store.pending_counts(now)
    inventory = store.inventory()
    busy = busy_queues(pending)
    limits = Thresholds.from_config(config, stale_after)
    records = store.machines()
    root_url = config.taskcluster_root_url
    machines = [view(record, now, root_url, busy, limits,
                     in_inventory=record.machine_id in inventory if inventory else None)
                for record in records]
    if not (with_never_seen and inventory):
        return Fleet(machines, pending, [], inventory)
    seen = {record.machine_id for record in records}
    # the listener records only these provisioners: with one, it is the never-seen machines' too
    provisioner = config.provisioner_ids[0] if len(config.provisioner_ids) == 1 else None
    return Fleet(machines, pending,
                 [view(record, now, root_url, busy, limits, in_inventory=True)
                  for record in never_seen_records(inventory, seen, provisioner)],
                 inventory)


def read_machine(store: Store, config: Config, record: MachineRecord, now: datetime) -> dict:
    """One machine as the API shows it at `now`, with its recent tasks, judged against the work
    waiting now."""
    busy = busy_queues(store.pending_counts(now))
    machine = machine_json(record, now, config.taskcluster_root_url, busy,
                           Thresholds.from_config(config),
                           in_inventory=store.inventory_lists(record.machine_id))
    machine["recent_tasks"] = recent_tasks(record.history, config.recent_tasks,
                                           config.taskcluster_root_url)
    return machine
