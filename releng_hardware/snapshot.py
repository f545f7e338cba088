"""The reads behind every view: the store read once, then the pure fleet views applied at `now`."""

from __future__ import annotations

from datetime import datetime
from itertools import chain
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from .config import Config
from .fields import CountedMachine, Machine, MachineDetail
from .fleet import busy_queues, machine_json, never_seen_records, recent_tasks
from .problems import Thresholds
from .records import MachineRecord, Quarantine
from .store import Store


class Fleet(NamedTuple):
    """Everything the views show, read once."""

    # every machine seen, as the view of read_fleet shows it
    machines: list[Machine | CountedMachine]
    pending: dict[str, int]  # tasks waiting per `<provisioner>/<workerType>`
    # the inventory's machines never seen, in the same view
    never_seen: list[Machine | CountedMachine]
    inventory: dict[str, str | None]  # machine id -> worker type; empty when none is loaded
    # some of `machines` and `never_seen` as machine_json shows them, judged by the same read
    in_full: Callable[[Iterable[Mapping[str, Any]]], list[Machine]]
    # machine id -> its quarantine lasting past now, read once for every machine
    quarantines: dict[str, Quarantine]


def read_fleet(store: Store, config: Config, now: datetime, stale_after: float | None = None, *,
               with_never_seen: bool = True,
               view: Callable[..., Machine | CountedMachine] = machine_json) -> Fleet:
    """Every machine as the API shows it, the pending tasks per queue and the inventory, at `now`.

    with_never_seen=False leaves `never_seen` empty, for a view that would not show them;
    view=counted_json builds only what `summary` counts and `select` reads, and `in_full`
    the whole machine for the few rows a page shows.
    """
    pending = store.pending_counts(now)
    inventory = store.inventory()
    busy = busy_queues(pending)
    limits = Thresholds.from_config(config, stale_after)
    records = store.machines()
    # one HGETALL of the quarantined machines only (a few), never a read per machine
    quarantines = store.quarantines(now)
    root_url = config.taskcluster_root_url

    def judged(record: MachineRecord, as_view: Callable[..., Any]) -> Any:
        # an inventory machine never seen is in the inventory: the same test says so
        machine_id = record.machine_id
        return as_view(record, now, root_url, busy, limits,
                       in_inventory=machine_id in inventory if inventory else None,
                       quarantine=quarantines.get(machine_id) if quarantines else None)

    machines = [judged(record, view) for record in records]
    never_seen: list[MachineRecord] = []
    if with_never_seen and inventory:
        seen = {record.machine_id for record in records}
        # the listener records only these provisioners: with one, it is the never-seen
        # machines' too
        provisioner = config.provisioner_ids[0] if len(config.provisioner_ids) == 1 else None
        never_seen = never_seen_records(inventory, seen, provisioner)

    by_id: dict[str, MachineRecord] = {}  # built on the first call: most views never make one

    def in_full(shown: Iterable[Mapping[str, Any]]) -> list[Machine]:
        if not by_id:
            by_id.update((record.machine_id, record) for record in chain(records, never_seen))
        return [judged(by_id[machine["id"]], machine_json) for machine in shown]

    return Fleet(machines, pending, [judged(record, view) for record in never_seen], inventory,
                 in_full, quarantines)


def read_machine(store: Store, config: Config, record: MachineRecord,
                 now: datetime) -> MachineDetail:
    """One machine as the API shows it at `now`, with its recent tasks, judged against the work
    waiting now."""
    busy = busy_queues(store.pending_counts(now))
    machine = machine_json(record, now, config.taskcluster_root_url, busy,
                           Thresholds.from_config(config),
                           in_inventory=store.inventory_lists(record.machine_id),
                           quarantine=store.quarantines(now).get(record.machine_id))
    return {**machine, "recent_tasks": recent_tasks(record.history, config.recent_tasks,
                                                    config.taskcluster_root_url)}
