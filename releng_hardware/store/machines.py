"""The machines as stored: their batch writes (record), loads (preload, backfill), the
retention sweep, their reads (records, one machine's detail), the listener's status; and the
`Store`, every part of the store over one Redis client.

Its keys and what each holds: docs/architecture.md, "Redis layout" (the one description).

The scripts are lua/*.lua, package data read once at import. Each layout they share with
Python is defined once, here or in `history`: a batch item's fields (WORKER_ITEM,
PENDING_ITEM) and the history entry's spans (history.FIELDS) travel with every batch as
BATCH_LAYOUT, and the script resolves each name to its position before its first write,
failing the batch whole on a name it cannot find. One small argument per batch, nothing
per message; a test checks that each item builder fills the fields its layout names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import orjson
from redis.commands.core import Script

from . import history, peers
from .base import (REDIS_ERRORS, WATCH_ATTEMPTS, WRITES_REFUSED, StorePart, decode_details,
                   decode_record, is_passing_outage, load_failure, open_redis, pending_after)
from .index import (INDEX_BUILD_STEP, NOT_BUILT, ORDER_BUILD_STEP, TOO_MANY_UNJUDGED,
                    AttentionFigures, FleetFigures, GroupFigures, IndexPart, JudgementWrite,
                    MachineViews, OrderEntry, OrderPage, Unjudged, UnjudgedMachine)
from .inventory import InventoryPart
from .labels import LabelsPart, with_peers
from .quarantines import TASKCLUSTER_COUNTERS, QuarantinesPart, lasting_quarantine
from .scripts import script
from ..core.events import PendingEvent, WorkerEvent
from ..core.identifiers import queue_id
from ..core.records import (COMPLETED, NOT_COUNTED, RUNNING, BackfillItem, MachineRecord,
                            Quarantine, outcome_code)
from ..core.times import epoch_microseconds, epoch_seconds, format_lastseen

# What the store's importers find here: the Store and what its methods take and return.
__all__ = [
    "Store", "MachinesPart", "BatchResult", "SweepStep", "MachineDetailRead", "LISTENER_COUNTERS",
    "WORKER_ITEM", "PENDING_ITEM", "BATCH_LAYOUT", "BATCH_PARTS", "history", "peers",
    "REDIS_ERRORS", "WRITES_REFUSED", "WATCH_ATTEMPTS", "is_passing_outage", "load_failure",
    "open_redis", "pending_after", "INDEX_BUILD_STEP", "ORDER_BUILD_STEP", "NOT_BUILT",
    "TOO_MANY_UNJUDGED", "AttentionFigures", "FleetFigures", "GroupFigures", "JudgementWrite",
    "MachineViews", "OrderEntry", "OrderPage", "Unjudged", "UnjudgedMachine",
    "TASKCLUSTER_COUNTERS"]

LISTENER_COUNTERS = ("processed", "written", "skipped", "malformed", "duplicate", "ignored")

# The batch items the record script reads, field by field in this order (strings: Lua would
# print a float score with too few digits). The script gets these names with every batch
# and finds each field by its name, so Python and Lua cannot read one item two ways.
WORKER_ITEM = ("kind", "machine_id", "lastseen", "firstseen", "event_time", "provisioner",
               "worker_type", "task_id", "run_id", "state", "reason", "deadline", "entry", "label")
PENDING_ITEM = ("kind", "queue", "task_run", "deadline")
# The layout the record script reads every field with: the items' and the history entry's.
BATCH_LAYOUT = orjson.dumps({"worker": WORKER_ITEM, "pending": PENDING_ITEM,
                             "entry": history.lua_spans(), "running": RUNNING,
                             "peer": peers.lua_spans(), "completed": COMPLETED,
                             "not_counted": NOT_COUNTED, "failing": peers.FAILING,
                             "no_label": history.NO_LABEL})

# Every script that adds or removes a machine starts with the machine order's rule (its member
# and key), and every script that writes one with the machine index's (its group, its place by
# lastseen, its judgement), so that each keeps both in the same atomic write; those that write
# a lastseen keep it by seen.lua's one rule.
_WRITES_MACHINES = ("machine_order", "seen", "machine_index")
# The batch script's concerns, one part each (lua/batch_decode.lua names them), in the order
# they are joined: still one script, so a batch is still atomic.
BATCH_PARTS = ("batch_decode", "batch_history", "batch_lastseen", "batch_pending", "batch_peers",
               "batch_outcomes", "batch_index", "batch_counters", "record_batch")
_RECORD_BATCH = script(*_WRITES_MACHINES, *BATCH_PARTS)
_REMOVE_EXPIRED = script(*_WRITES_MACHINES, "remove_expired")
_PRELOAD = script(*_WRITES_MACHINES, "preload")
_BACKFILL = script(*_WRITES_MACHINES, "backfill")
_MACHINE_DETAIL = script("pending_counts", "machine_detail")
# What lua/machine_detail.lua finds a history entry's label by: the label's first and last
# position, the attribution's position, the attribution letters of an entry written since
# labels (an older one has its reason there), and the reference of no label.
_DETAIL_LAYOUT: tuple[int | str, ...] = (
    *history.lua_spans()["label"], history.lua_spans()["attribution"][0],
    "".join(history.ATTRIBUTIONS), history.NO_LABEL)

# A batch item as the record script reads it (WORKER_ITEM, PENDING_ITEM): strings by position.
BatchItem = tuple[str, ...]


class MachineDetailRead(NamedTuple):
    """One machine and what /machines/<id> judges it by, read at once (Store.machine_detail)."""

    record: MachineRecord | None  # None when never seen
    in_inventory: bool | None  # None when no inventory is loaded
    quarantine: Quarantine | None  # lasting past the read's `now`
    pending: dict[str, int]  # tasks waiting per `<provisioner>/<workerType>` (pending_counts)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch changed."""

    written: int
    duplicates: int
    ignored: int = 0


@dataclass(frozen=True, slots=True)
class SweepStep:
    """What one step of the retention sweep did."""

    removed: int
    examined: int
    # True when this step ended a pass over every machine
    wrapped: bool


# The replies are Redis' nested arrays of str, int and None, typed by redis-py as Any.
def _decode_record_batch(reply: list[Any]) -> BatchResult:
    """lua/record_batch.lua's reply: {written, duplicates, ignored}."""
    written, duplicates, ignored = reply
    return BatchResult(int(written), int(duplicates), int(ignored))


def _decode_remove_expired(reply: list[Any]) -> SweepStep:
    """lua/remove_expired.lua's reply: {removed, examined, the HSCAN cursor it stopped at}."""
    removed, examined, cursor = reply
    return SweepStep(int(removed), int(examined), cursor in ("0", b"0"))


def _decode_loads(replies: list[Any]) -> tuple[int, int]:
    """The replies of a load's chunks (lua/preload.lua, lua/backfill.lua: {written, kept}
    each), summed: (written, kept because newer)."""
    written = kept = 0
    for chunk_written, chunk_kept in replies:
        written, kept = written + int(chunk_written), kept + int(chunk_kept)
    return written, kept


def _decode_machine_detail(reply: list[Any], machine_id: str, runs: int | None,
                           now: datetime | None, peer_window: float) -> MachineDetailRead:
    """lua/machine_detail.lua's reply: {lastseen, record, history, inventory loaded, listed,
    quarantine, queues, then (queue, count) per queue, then (label ref, stored label) pairs}."""
    lastseen, raw, raw_history, loaded, listed = reply[:5]
    in_inventory = bool(listed) if loaded else None
    if lastseen is None:
        return MachineDetailRead(None, in_inventory, None, {})
    queues_end = 7 + 2 * int(reply[6])
    pending = dict(zip(reply[7:queues_end:2], map(int, reply[8:queues_end:2]), strict=True))
    labels = dict(zip(reply[queues_end::2], reply[queues_end + 1::2], strict=True))
    entries = (() if not raw_history else raw_history.split("\n") if runs is None
               else raw_history.split("\n", runs)[:runs])
    record = MachineRecord(machine_id, lastseen, decode_details(raw),
                           with_peers(machine_id, tuple(map(history.decode_entry, entries)),
                                      labels, peer_window))
    quarantine = None if now is None else lasting_quarantine(reply[5], format_lastseen(now))
    return MachineDetailRead(record, in_inventory, quarantine, pending)


class MachinesPart(StorePart):
    """The machines: written by batches and loads, swept, read; the listener's status."""

    SCRIPTS: ClassVar[Mapping[str, str]] = {
        "_record_batch": _RECORD_BATCH, "_preload": _PRELOAD, "_remove_expired": _REMOVE_EXPIRED,
        "_backfill": _BACKFILL, "_detail_script": _MACHINE_DETAIL}
    _record_batch: Script
    _preload: Script
    _remove_expired: Script
    _backfill: Script
    _detail_script: Script

    # -- writes -------------------------------------------------------------

    def record(
        self,
        events: Sequence[WorkerEvent | PendingEvent],
        *,
        now: datetime,
        received_at: datetime | None = None,
        processed: int | None = None,
        skipped: int = 0,
        malformed: int = 0,
    ) -> BatchResult:
        """Apply a batch atomically: lastseen only moves forward, redeliveries count once."""
        items: list[BatchItem] = []
        for event in events:
            items.append(self._worker_item(event) if isinstance(event, WorkerEvent)
                         else self._pending_item(event))
        args: list[str | int | float | bytes] = [
            self.prefix, epoch_seconds(now), self.history_size,
            len(events) + skipped + malformed if processed is None else processed,
            skipped, malformed, format_lastseen(received_at or now), orjson.dumps(items), BATCH_LAYOUT,
            self._peer_settings,
        ]
        return _decode_record_batch(self._record_batch(
            keys=[self.keys.machines, self.keys.machine_records, self.keys.listener,
                  self.keys.machine_history, self.keys.machine_order],
            args=args))

    @staticmethod
    def _pending_item(event: PendingEvent) -> BatchItem:
        # laid out as PENDING_ITEM
        return ("p", queue_id(event.provisioner_id, event.worker_type), f"{event.task_id}/{event.run_id}",
                repr(epoch_seconds(event.deadline)))

    @staticmethod
    def _worker_item(event: WorkerEvent) -> BatchItem:
        # laid out as WORKER_ITEM
        # built for every message the listener records: each time is formatted once
        lastseen_at, state, task_id = event.lastseen, event.state, event.task_id
        reason = event.reason_resolved
        lastseen = format_lastseen(lastseen_at)
        event_time = event.event_time or lastseen_at
        started = event.started
        if started is None and state == "running":
            started = event_time
        # the run's start is evidence of life too, whichever of its messages comes first
        first = lastseen if started is None or started >= lastseen_at else format_lastseen(started)
        label = event.label
        entry = history.encode_entry(event_time, started, task_id, event.run_id,
                                     outcome_code(state, reason), reason, label)
        deadline = event.deadline
        return (
            "w", event.machine_id, lastseen, first,
            lastseen if event_time is lastseen_at else format_lastseen(event_time),
            event.provisioner_id, event.worker_type, task_id, str(event.run_id), state, reason or "",
            "" if deadline is None else repr(epoch_seconds(deadline)),
            entry, label or "",
        )

    def preload(self, lastseen_by_machine: Mapping[str, datetime], chunk: int = 5000) -> tuple[int, int]:
        """Raise each machine's lastseen to the given one; (written, kept because newer)."""
        items = [(machine_id, format_lastseen(moment), str(epoch_microseconds(moment)))
                 for machine_id, moment in lastseen_by_machine.items()]

        # Any: redis-py's Pipeline is not generic over the decoded replies it gives here
        def queue_writes(pipe: Any) -> None:
            pipe.multi()
            for start in range(0, len(items), chunk):
                args = [value for pair in items[start:start + chunk] for value in pair]
                self._preload(keys=[self.keys.machines, self.keys.version, self.keys.machine_records,
                                    self.keys.machine_order],
                              args=[self.prefix, *args], client=pipe)
        return _decode_loads(self._all_or_nothing(queue_writes))

    def backfill(self, items: Sequence[BackfillItem], chunk: int = 5000) -> tuple[int, int]:
        """Raise lastseen (never lower it), firstseen and the worker type of machines from
        Taskcluster's worker list, all or nothing; (written, kept because newer)."""
        rows = [(item.machine_id, format_lastseen(item.lastseen),
                 "" if item.firstseen is None else format_lastseen(item.firstseen),
                 item.provisioner, item.worker_type) for item in items]

        # Any: as preload's
        def queue_writes(pipe: Any) -> None:
            pipe.multi()
            for start in range(0, len(rows), chunk):
                self._backfill(keys=[self.keys.machines, self.keys.machine_records, self.keys.version,
                                     self.keys.machine_order],
                               args=[orjson.dumps(rows[start:start + chunk]), self.prefix],
                               client=pipe)
        return _decode_loads(self._all_or_nothing(queue_writes))

    def remove_expired(self, cutoff: datetime, count: int = 1000) -> SweepStep:
        """One bounded step of the retention sweep: of about `count` machines, remove those
        not seen since `cutoff` and not in the inventory, with their history.

        Each step goes on where the last one stopped, whichever listener ran it; a pass
        over every machine takes len(machines) / count steps. Atomic, like every write.
        """
        return _decode_remove_expired(self._remove_expired(
            keys=[self.keys.machines, self.keys.machine_records, self.keys.machine_history,
                  self.keys.inventory, self.keys.retention_cursor, self.keys.version,
                  self.keys.machine_order],
            args=[self.prefix, format_lastseen(cutoff), count]))

    def listener_connected(self, now: datetime, queue: str) -> None:
        """Note that a listener (re)connected to its queue."""
        self.redis.hset(self.keys.listener, mapping={
            "last_connected_at": format_lastseen(now), "queue": queue,
            "heartbeat_at": format_lastseen(now)})

    def listener_heartbeat(self, now: datetime) -> None:
        """Note that a listener is alive, even when no message arrives."""
        self.redis.hset(self.keys.listener, "heartbeat_at", format_lastseen(now))

    # -- reads --------------------------------------------------------------

    def machines(self) -> list[MachineRecord]:
        """Every machine ever seen, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.machines)
        pipe.hgetall(self.keys.machine_records)
        lastseen_by_id, raw_records = pipe.execute()
        return [decode_record(machine_id, lastseen, raw_records.get(machine_id))
                for machine_id, lastseen in lastseen_by_id.items()]

    def lastseen_by_machine(self) -> dict[str, str]:
        """Every machine's lastseen as stored, without what it did (one HGETALL)."""
        return self.redis.hgetall(self.keys.machines)  # type: ignore[return-value]

    def data_version(self) -> int:
        """A number that changes whenever machine data changes; read it before the data."""
        return int(self.redis.get(self.keys.version) or 0)

    def machine(self, machine_id: str) -> MachineRecord | None:
        """One machine with its history, or None when it was never seen (one round trip)."""
        return self._read_machine(machine_id, None, None).record

    def machine_detail(self, machine_id: str, now: datetime, *, runs: int) -> MachineDetailRead:
        """One machine with its newest `runs` runs (their labels and peers), whether the
        inventory lists it, its quarantine lasting past `now` and the tasks waiting per queue
        at `now` (as pending_counts counts them), in one round trip. Its record is None when
        it was never seen; then only `in_inventory` is read."""
        return self._read_machine(machine_id, runs, now)

    def _read_machine(self, machine_id: str, runs: int | None,
                      now: datetime | None) -> MachineDetailRead:
        """lua/machine_detail.lua: the machine with its newest `runs` runs (None: all); given
        `now`, its quarantine lasting past it and the tasks waiting (none counted without)."""
        reply = self._detail_script(
            keys=[self.keys.machines, self.keys.machine_records, self.keys.machine_history,
                  self.keys.inventory, self.keys.quarantine, self.keys.pending_queues],
            args=[machine_id, -1 if runs is None else runs, self.keys.label(""), *_DETAIL_LAYOUT,
                  self.keys.pending(""), "" if now is None else pending_after(now)])
        return _decode_machine_detail(reply, machine_id, runs, now, self.peer_window)

    def pending_counts(self, now: datetime) -> dict[str, int]:
        """Tasks waiting per `<provisioner>/<workerType>`, ignoring those past their deadline."""
        queues: list[str] = sorted(self.redis.smembers(self.keys.pending_queues))  # type: ignore[arg-type]
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zcount(self.keys.pending(queue), pending_after(now), "+inf")
        return dict(zip(queues, (int(count) for count in pipe.execute()), strict=True))

    def listener_status(self) -> dict[str, str]:
        """The listener's heartbeat and counters, as stored."""
        return self.redis.hgetall(self.keys.listener)  # type: ignore[return-value]


class Store(MachinesPart, IndexPart, LabelsPart, QuarantinesPart, InventoryPart):
    """Reads and writes the service's data in one Redis: every part of the store, each over the
    same client, prefix and settings (StorePart); the parts share no state but those."""
