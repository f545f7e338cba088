"""Every Redis key and script of the service, and nothing else.

Its keys and what each holds: docs/architecture.md, "Redis layout" (the one description).

Writes go through Lua scripts, so each batch is atomic and two listeners on
one queue cannot interleave a read-compare-write. Loads (preload, and any other
bulk write) go through `Store._all_or_nothing`: one MULTI/EXEC that Redis applies
whole or not at all, even when the link or the server fails in the middle.

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
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

import orjson
import redis

from . import history, peers
from .keys import Keys, order_member_id
from .scripts import script
from ..core.config import WINDOW, Config
from ..core.events import PendingEvent, WorkerEvent
from ..core.records import (COMPLETED, NOT_COUNTED, RUNNING, BackfillItem, MachineRecord, Quarantine,
                      Run, outcome_code)
from ..core.times import epoch_microseconds, epoch_seconds, format_lastseen

# A load whose watched keys keep changing under it, or whose link keeps breaking, gives up
# after this many attempts.
WATCH_ATTEMPTS = 5
# Ended runs the problem rules need per machine (problems.WINDOW), and a few
# more so that runs still running or resolved by the queue for outside reasons
# do not push the oldest counted ones out.
HISTORY_SLACK = 8
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
# Config declares PEER_WINDOW's and PEER_FAILURES' defaults, for a store made without them.
_DEFAULTS = Config()


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
_REPLACE_QUARANTINES = script("replace_quarantines")
_BACKFILL = script(*_WRITES_MACHINES, "backfill")
# remove build_machine_order.lua (and machine_order_state) once every deployment has run a
# release with the machine order (1.0.0) long enough to have paged /machines once
_BUILD_MACHINE_ORDER = script("machine_order", "build_machine_order")
_MACHINE_PAGE = script("machine_page")
_BUILD_MACHINE_INDEX = script("machine_index", "build_machine_index")
_JUDGE = script("machine_index", "judge")
_FLEET_FIGURES = script("fleet_figures")
# The read scripts that answer with the work waiting count it by one rule (pending_after).
_MACHINE_VIEWS = script("pending_counts", "machine_views")
_MACHINE_DETAIL = script("pending_counts", "machine_detail")
# What lua/machine_detail.lua finds a history entry's label by: the label's first and last
# position, the attribution's position, the attribution letters of an entry written since
# labels (an older one has its reason there), and the reference of no label.
_DETAIL_LAYOUT: tuple[int | str, ...] = (
    *history.lua_spans()["label"], history.lua_spans()["attribution"][0],
    "".join(history.ATTRIBUTIONS), history.NO_LABEL)
# Machines written before the machine order existed are added to it this many per script
# call: a few milliseconds of Redis each, however big the fleet.
ORDER_BUILD_STEP = 10_000
# The machine index is built this many machines per script call (each decodes their records).
INDEX_BUILD_STEP = 5_000




TASKCLUSTER_COUNTERS = ("consecutive_failures", "polls", "failures")


def pending_after(now: datetime) -> str:
    """The rule of the work waiting: a pending task waits while its deadline is after `now`.
    As ZCOUNT's lower bound, in Python's counts and the read scripts' (lua/pending_counts.lua)."""
    return f"({epoch_seconds(now)}"


class OrderEntry(NamedTuple):
    """One machine of a page of the machine order, with what the views need of it."""

    member: str  # its place in the order
    record: MachineRecord
    quarantine: Quarantine | None  # lasting past the page's `now`
    in_inventory: bool | None  # None when no inventory is loaded


class MachineDetailRead(NamedTuple):
    """One machine and what /machines/<id> judges it by, read at once (Store.machine_detail)."""

    record: MachineRecord | None  # None when never seen
    in_inventory: bool | None  # None when no inventory is loaded
    quarantine: Quarantine | None  # lasting past the read's `now`
    pending: dict[str, int]  # tasks waiting per `<provisioner>/<workerType>` (pending_counts)


class OrderPage(NamedTuple):
    """A few machines of the machine order, read in one script."""

    entries: list[OrderEntry]
    more: bool  # the order goes on past `last`
    last: str | None  # the last member read (of a machine shown or not); None when none


class GroupFigures(NamedTuple):
    """One group of the machine index at one moment (lua/fleet_figures.lua)."""

    group: str  # "<datacenter>\t<provisioner>\t<worker type>"
    machines: int
    stale: int  # not seen since the stale cutoff
    seen_within: int  # seen since the other cutoff
    hung: int  # newest run running since before the hung cutoff


class Unjudged(NamedTuple):
    """A machine written since it was last judged, as the machine index's figures hold it."""

    machine_id: str
    generation: str
    record: MachineRecord
    stored: str | None  # its judgement as stored, None when it was never judged
    # its score in index:attention (its lastseen when judged), None when not in it
    attention_score: int | None


class AttentionFigures(NamedTuple):
    """How many machines index:attention holds, how many of them are stale, and how many
    machines are hung while neither in it nor stale (the cutoffs of the read)."""

    judged: int
    judged_stale: int
    hung_only: int


class FleetFigures(NamedTuple):
    """What /summary and the dashboard count, read from the machine index at one moment."""

    unjudged: list[Unjudged]
    groups: list[GroupFigures]
    counts: dict[str, int]  # "<group>\n<code>" -> judged machines of the group with it
    attention: AttentionFigures


class MachineViews(NamedTuple):
    """What /machines with every field shows, read from the machine index at one moment."""

    lastseen_by_id: dict[str, str]  # every machine's lastseen as stored
    views: dict[str, str]  # machine id -> its view (machine_index.encode_view), of the judged ones
    judgements: dict[str, str]  # machine id -> its judgement as stored, of the judged ones
    # (id, generation, record with its lastseen) of every machine unjudged
    unjudged: list[tuple[str, str, MachineRecord]]
    pending: dict[str, int]  # as pending_counts(now)
    quarantines: dict[str, Quarantine]  # as quarantines(now)
    inventory: set[str]  # the inventory's machines; empty when none is loaded


# fleet_figures' answers when it has no figures: build the index, or judge some machines first
NOT_BUILT, TOO_MANY_UNJUDGED = -2, -1


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


# Every Redis failure: the data store's fault, never the request's or the message's.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError,)
# The failures that pass by themselves: a lost link, a timeout, a server still loading.
_PASSING_OUTAGES = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


# Redis refusing writes while it still serves reads: memory full (maxmemory), a read-only replica.
WRITES_REFUSED: tuple[type[Exception], ...] = (redis.OutOfMemoryError, redis.ReadOnlyError)


def is_passing_outage(exc: BaseException) -> bool:
    """Whether a Redis failure passes by itself (retry, warn) rather than needs an operator.

    READONLY after a failover, OOM, NOPERM or a wrong password need one: an error, not a warning.
    """
    # redis-py makes NOAUTH and WRONGPASS connection errors, but no retry mends a wrong password
    return isinstance(exc, _PASSING_OUTAGES) and not isinstance(exc, redis.AuthenticationError)


def open_redis(url: str, timeout: float = 3.0, *, tls_verify: str = "required") -> redis.Redis:
    """A client whose every call fails within `timeout` seconds instead of hanging.

    `tls_verify` is how a rediss:// server's certificate is checked: "required", or
    "none" for a self-signed one (Heroku Redis); a redis:// URL has no certificate.
    """
    tls = {"ssl_cert_reqs": tls_verify} if urlsplit(url).scheme == "rediss" else {}
    return redis.Redis.from_url(
        url,
        **tls,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        # RESP2 explicitly: redis-py 8 would otherwise negotiate RESP3.
        protocol=2,
    )


def load_failure(exc: redis.RedisError) -> str:
    """What a load that failed with `exc` left in Redis, in words for the operator."""
    if isinstance(exc, redis.ResponseError):
        return f"refused the load, nothing written: {exc}"
    # the link broke: EXEC may have run before its answer was lost
    return (f"failed during the load: {exc} -- it was applied whole or not at all; "
            "run it again (loading twice changes nothing)")


class Store:
    """Reads and writes the service's data in one Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "", *, recent_tasks: int = WINDOW,
                 peer_window: float = _DEFAULTS.peer_window,
                 peer_failures: int = _DEFAULTS.peer_failures) -> None:
        # decode_responses=True (see client()): replies are str, which redis-py's types, bytes | str,
        # cannot tell; the reads below say so to mypy
        self.redis = client
        self.prefix = prefix
        self.peer_window = peer_window
        # the batch script's peer settings: the same for every batch
        self._peer_settings = orjson.dumps({
            "window": int(peer_window * 1000), "failures": peer_failures,
            "runs": peers.LABEL_RUNS, "judged": WINDOW})
        # every key name of the store: keys.Keys, the one place one is spelt
        self.keys = Keys(prefix)
        # runs kept per machine: what /machines/<id> shows and what the rules need
        self.history_size = max(recent_tasks, WINDOW) + HISTORY_SLACK
        (self._record_batch, self._preload, self._remove_expired, self._backfill,
         self._replace_quarantines, self._build_machine_order, self._machine_page,
         self._build_machine_index, self._judge, self._fleet_figures, self._detail_script,
         self._machine_views) = (client.register_script(source) for source in (
            _RECORD_BATCH, _PRELOAD, _REMOVE_EXPIRED, _BACKFILL, _REPLACE_QUARANTINES,
            _BUILD_MACHINE_ORDER, _MACHINE_PAGE, _BUILD_MACHINE_INDEX, _JUDGE, _FLEET_FIGURES,
            _MACHINE_DETAIL, _MACHINE_VIEWS))

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
        items: list[tuple] = []
        for event in events:
            items.append(self._worker_item(event) if isinstance(event, WorkerEvent)
                         else self._pending_item(event))
        args: list[Any] = [
            self.prefix, epoch_seconds(now), self.history_size,
            len(events) + skipped + malformed if processed is None else processed,
            skipped, malformed, format_lastseen(received_at or now), orjson.dumps(items), BATCH_LAYOUT,
            self._peer_settings,
        ]
        written, duplicates, ignored = self._record_batch(
            keys=[self.keys.machines, self.keys.machine_records, self.keys.listener,
                  self.keys.machine_history, self.keys.machine_order],
            args=args)
        return BatchResult(int(written), int(duplicates), int(ignored))

    @staticmethod
    def _pending_item(event: PendingEvent) -> tuple:
        # laid out as PENDING_ITEM
        return ("p", f"{event.provisioner_id}/{event.worker_type}", f"{event.task_id}/{event.run_id}",
                repr(epoch_seconds(event.deadline)))

    @staticmethod
    def _worker_item(event: WorkerEvent) -> tuple:
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

        def queue_writes(pipe: Any) -> None:
            pipe.multi()
            for start in range(0, len(items), chunk):
                args = [value for pair in items[start:start + chunk] for value in pair]
                self._preload(keys=[self.keys.machines, self.keys.version, self.keys.machine_records,
                                    self.keys.machine_order],
                              args=[self.prefix, *args], client=pipe)
        written = kept = 0
        for chunk_written, chunk_kept in self._all_or_nothing(queue_writes):
            written, kept = written + int(chunk_written), kept + int(chunk_kept)
        return written, kept

    def _all_or_nothing(self, queue_writes: Callable[[Any], None], *watched: str) -> list[Any]:
        """Run the writes `queue_writes` puts after `pipe.multi()` as one MULTI/EXEC; their replies.

        Redis runs nothing of a transaction before it has read EXEC, drops it when the
        link breaks before that, and refuses it whole (EXECABORT) when a command cannot
        be queued, e.g. out of memory: a load is applied whole or not at all
        (tests/integration/test_atomic_loads.py cuts the link mid-load). What a transaction
        cannot undo is a command failing while EXEC runs, so validate everything first,
        and let scripts check before their first write. redis-py sends the whole
        transaction again after a broken link, so a load must be idempotent. `queue_writes`
        may read before `pipe.multi()`; `watched` keys changed meanwhile make it run again.
        """
        # redis.Redis.transaction would retry forever, and redis-py reports a link broken while
        # watching as a WatchError too: a link that breaks every time must end in an error
        with self.redis.pipeline(transaction=True) as pipe:
            attempt = 1
            while True:
                try:
                    if watched:
                        pipe.watch(*watched)
                    queue_writes(pipe)
                    return pipe.execute()
                except redis.WatchError:
                    if attempt == WATCH_ATTEMPTS:
                        raise
                    attempt += 1

    def update_inventory(
        self, decide: Callable[[dict[str, str | None]], Mapping[str, str | None] | None],
        chunk: int = 5000,
    ) -> None:
        """Replace the inventory with decide(current inventory) in one transaction.

        decide returns the whole new inventory, or None to write nothing; it may raise
        to refuse. It runs again if another load changes the inventory meanwhile, so the
        web sees the old inventory or the new one, never a mix.
        """
        def apply(pipe: Any) -> None:
            current = _inventory(pipe.hgetall(self.keys.inventory))
            after = decide(current)
            if after is None or after == current:
                return
            items = [(machine_id, worker_type or "") for machine_id, worker_type in after.items()]
            pipe.multi()
            pipe.delete(self.keys.inventory)
            for start in range(0, len(items), chunk):
                pipe.hset(self.keys.inventory, mapping=dict(items[start:start + chunk]))
            pipe.incr(self.keys.version)
        self._all_or_nothing(apply, self.keys.inventory)

    def remove_expired(self, cutoff: datetime, count: int = 1000) -> SweepStep:
        """One bounded step of the retention sweep: of about `count` machines, remove those
        not seen since `cutoff` and not in the inventory, with their history.

        Each step goes on where the last one stopped, whichever listener ran it; a pass
        over every machine takes len(machines) / count steps. Atomic, like every write.
        """
        removed, examined, cursor = self._remove_expired(
            keys=[self.keys.machines, self.keys.machine_records, self.keys.machine_history,
                  self.keys.inventory, self.keys.retention_cursor, self.keys.version,
                  self.keys.machine_order],
            args=[self.prefix, format_lastseen(cutoff), count])
        return SweepStep(int(removed), int(examined), cursor in ("0", b"0"))

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
        loads = orjson.loads
        return [
            MachineRecord(machine_id, lastseen,
                          loads(raw_records[machine_id]) if machine_id in raw_records else {})
            for machine_id, lastseen in lastseen_by_id.items()
        ]

    def machine_order_page(self, after: str | bytes | None, count: int, now: datetime, *,
                           reverse: bool = False) -> OrderPage:
        """Up to `count` machines of the machine order after the member `after` (None: from the
        start; reverse: backwards, from the end), with their quarantine lasting past `now`.

        Reads those machines only, in one script. Machines written before the order existed
        are added to it first, once per deployment (build_machine_order).
        """
        start: str | bytes = ("+" if reverse else "-") if after is None else (
            b"(" + after if isinstance(after, bytes) else "(" + after)
        keys = [self.keys.machine_order, self.keys.machine_order_state, self.keys.machines,
                self.keys.machine_records, self.keys.quarantine, self.keys.inventory]
        reply = self._machine_page(keys=keys, args=[start, count, "1" if reverse else "0"])
        while int(reply[0]) == -1:
            self.build_machine_order()
            reply = self._machine_page(keys=keys, args=[start, count, "1" if reverse else "0"])
        loaded, cutoff, loads = bool(int(reply[1])), format_lastseen(now), orjson.loads
        entries, last = [], None
        for at in range(2, len(reply), 5):
            member, lastseen, raw, quarantine, listed = reply[at:at + 5]
            last = member
            if lastseen is None:  # not in `machines` (a hand-made edit): nothing to show
                continue
            entries.append(OrderEntry(
                member, MachineRecord(order_member_id(member), lastseen, loads(raw) if raw else {}),
                _lasting_quarantine(quarantine, cutoff), bool(int(listed)) if loaded else None))
        return OrderPage(entries, bool(int(reply[0])), last)

    def build_machine_order(self, step: int = ORDER_BUILD_STEP) -> None:
        """Add every machine to the machine order, in steps of `step` (bounded scripts); does
        nothing once done. For the machines written before the order existed."""
        while not int(self._build_machine_order(
                keys=[self.keys.machines, self.keys.machine_order_state, self.keys.machine_order],
                args=[step])):
            pass

    def inventory(self) -> dict[str, str | None]:
        """The machines that should exist: id -> worker type or None; empty when none is loaded."""
        return _inventory(self.redis.hgetall(self.keys.inventory))  # type: ignore[arg-type]

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
        lastseen, raw, raw_history, loaded, listed = reply[:5]
        in_inventory = bool(listed) if loaded else None
        if lastseen is None:
            return MachineDetailRead(None, in_inventory, None, {})
        queues_end = 7 + 2 * int(reply[6])
        pending = dict(zip(reply[7:queues_end:2], map(int, reply[8:queues_end:2]), strict=True))
        labels = dict(zip(reply[queues_end::2], reply[queues_end + 1::2], strict=True))
        entries = (() if not raw_history else raw_history.split("\n") if runs is None
                   else raw_history.split("\n", runs)[:runs])
        record = MachineRecord(machine_id, lastseen, orjson.loads(raw) if raw else {},
                               self._with_peers(machine_id, tuple(map(history.decode_entry, entries)),
                                                labels))
        quarantine = None if now is None else _lasting_quarantine(reply[5], format_lastseen(now))
        return MachineDetailRead(record, in_inventory, quarantine, pending)

    def _with_peers(self, machine_id: str, runs: tuple[Run, ...],
                    labels: Mapping[str, str | None]) -> tuple[Run, ...]:
        """The runs with their label's name and, for resolved ones, their peers counted;
        `labels` holds the stored string of each label they name (None: expired)."""
        if not labels:
            return runs
        # each label decoded once, however many of the runs name it
        stored = {ref: peers.decode_label_marks(raw) for ref, raw in labels.items()}
        window_ms = int(self.peer_window * 1000)
        with_peers = []
        for run in runs:
            if run.label is None:
                with_peers.append(run)
                continue
            name, label_runs = stored.get(run.label, ("", []))
            if not name:
                with_peers.append(run._replace(label=None))
                continue
            latest = run.resolved or run.started
            counted = None if latest is None else peers.peer_counts(peers.peer_runs(
                label_runs, machine_id, history.entry_time(datetime.fromisoformat(latest)),
                window_ms))
            with_peers.append(run._replace(label=name, peers=counted))
        return tuple(with_peers)

    def failing_labels(self, now: datetime) -> list[tuple[str, list[peers.PeerRun]]]:
        """Every label with a failure within PEER_WINDOW before `now`: (label, its runs)."""
        since = history.entry_time(now) - int(self.peer_window * 1000)
        refs: list[str] = self.redis.zrangebyscore(self.keys.labels, since, "+inf")  # type: ignore[assignment]
        if not refs:
            return []
        raws: list[str | None] = self.redis.mget([self.keys.label(ref) for ref in refs])  # type: ignore[assignment]
        found = (peers.decode_label(raw) for raw in raws)
        return [(name, runs) for name, runs in found if name]

    def inventory_lists(self, machine_ref: str) -> bool | None:
        """Whether the inventory lists `<dc>:<host>`, or a machine of a bare hostname; None
        when no inventory is loaded."""
        if ":" in machine_ref:
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(self.keys.inventory)
            pipe.hexists(self.keys.inventory, machine_ref)
            loaded, listed = pipe.execute()
            return bool(listed) if loaded else None
        if not self.redis.exists(self.keys.inventory):
            return None
        return any(True for _ in self.redis.hscan_iter(self.keys.inventory, match=f"*:{machine_ref}",
                                                       count=1000))

    def machine_ids_for_hostname(self, hostname: str) -> list[str]:
        """Every `$DC:hostname` id seen for a hostname (several when datacenters share one)."""
        return sorted(machine_id for machine_id, _ in self.redis.hscan_iter(
            self.keys.machines, match=f"*:{hostname}", count=1000))

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

    def ping(self) -> bool:
        """True when Redis answers."""
        return bool(self.redis.ping())

    def all_keys(self) -> Iterable[str]:
        """Every key under this store's prefix (for tests and clean-up)."""
        return self.redis.scan_iter(match=self.prefix + "*", count=1000)

    # -- the machine index: what /summary counts without reading every machine ---------

    def build_machine_index(self, fingerprint: str, step: int = INDEX_BUILD_STEP) -> None:
        """Place every machine in the machine index and mark it unjudged, in steps of `step`
        (bounded scripts); does nothing once done for the thresholds of `fingerprint`."""
        while not self.build_machine_index_step(fingerprint, step):
            pass

    def build_machine_index_step(self, fingerprint: str, step: int = INDEX_BUILD_STEP) -> bool:
        """One bounded step of build_machine_index; True once the index is built."""
        keys = [self.keys.machines, self.keys.machine_records, self.keys.index_state]
        return bool(int(self._build_machine_index(keys=keys, args=[self.prefix, step, fingerprint])))

    def unjudged(self, count: int) -> list[tuple[str, str, MachineRecord]]:
        """Up to `count` unjudged machines: (id, generation, record), the generation read
        with the record, so that judge() stores a judgement only of the record it judged."""
        # any `count` of them (HSCAN from the start would walk the buckets emptied by judging)
        ids: list[str] = self.redis.hrandfield(self.keys.index_unjudged, count)  # type: ignore[assignment]
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=True)
        pipe.hmget(self.keys.index_unjudged, ids)
        pipe.hmget(self.keys.machines, ids)
        pipe.hmget(self.keys.machine_records, ids)
        generations, lastseens, raws = pipe.execute()
        return [(machine_id, generation, MachineRecord(machine_id, lastseen,
                                                       orjson.loads(raw) if raw else {}))
                for machine_id, generation, lastseen, raw in zip(ids, generations, lastseens, raws,
                                                                 strict=True)
                if generation is not None and lastseen is not None]

    def judge(self, judgements: Sequence[tuple[str, str, str]]) -> int:
        """Store judgements (id, generation, encoded judgement) of machines not written since
        their generation was read, without views; how many were stored."""
        return self.judge_with_views([(*judgement, None) for judgement in judgements])

    def fleet_figures(self, stale_cutoff: int, seen_cutoff: int, hung_cutoff: int,
                      fingerprint: str, max_unjudged: int) -> FleetFigures | int:
        """The machine index's figures at one moment (lua/fleet_figures.lua; cutoffs in epoch
        microseconds), or NOT_BUILT / TOO_MANY_UNJUDGED."""
        reply = self._fleet_figures(keys=[self.keys.machine_records, self.keys.machines], args=[
            self.prefix, stale_cutoff, seen_cutoff, hung_cutoff, max_unjudged, fingerprint])
        if int(reply[0]) != 0:
            return int(reply[0])
        _, unjudged, groups, counts, attention = reply
        loads = orjson.loads
        return FleetFigures(
            unjudged=[Unjudged(unjudged[at], unjudged[at + 1],
                               MachineRecord(unjudged[at], unjudged[at + 4],
                                             loads(unjudged[at + 2]) if unjudged[at + 2] else {}),
                               unjudged[at + 3],
                               None if unjudged[at + 5] is None else int(unjudged[at + 5]))
                      for at in range(0, len(unjudged), 6)],
            groups=[GroupFigures(groups[at], *(int(value) for value in groups[at + 1:at + 5]))
                    for at in range(0, len(groups), 5)],
            counts={counts[at]: int(counts[at + 1]) for at in range(0, len(counts), 2)},
            attention=AttentionFigures(*(int(value) for value in attention)))

    def records_of(self, machine_ids: Sequence[str]) -> dict[str, MachineRecord]:
        """The machines of `machine_ids` that were seen, with their records (two HMGETs)."""
        if not machine_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.machines, machine_ids)
        pipe.hmget(self.keys.machine_records, machine_ids)
        lastseens, raws = pipe.execute()
        return {machine_id: MachineRecord(machine_id, lastseen, orjson.loads(raw) if raw else {})
                for machine_id, lastseen, raw in zip(machine_ids, lastseens, raws, strict=True)
                if lastseen is not None}

    def judge_with_views(self, judgements: Sequence[tuple[str, str, str, str | None]]) -> int:
        """Store judgements with their views (id, generation, encoded judgement, view or None:
        none) of machines not written since their generation was read; how many were stored."""
        if not judgements:
            return 0
        return int(self._judge(keys=[self.keys.machines],
                               args=[self.prefix, orjson.dumps(list(judgements))]))

    def machine_views(self, now: datetime, fingerprint: str,
                      max_unjudged: int) -> MachineViews | int:
        """Every machine's lastseen, judgement and view, the unjudged ones' records, the tasks
        waiting, the quarantines lasting past `now` and the inventory, in one script
        (lua/machine_views.lua); or NOT_BUILT / TOO_MANY_UNJUDGED."""
        reply = self._machine_views(
            keys=[self.keys.machines, self.keys.machine_records, self.keys.quarantine, self.keys.inventory,
                  self.keys.pending_queues],
            args=[self.prefix, pending_after(now), max_unjudged, fingerprint])
        if int(reply[0]) != 0:
            return int(reply[0])
        _, machines, views, judgements, unjudged, pending, quarantines, inventory = reply
        loads = orjson.loads
        waiting = {pending[at]: int(pending[at + 1]) for at in range(0, len(pending), 2)}
        return MachineViews(
            lastseen_by_id=_pairs(machines), views=_pairs(views), judgements=_pairs(judgements),
            unjudged=[(unjudged[at], unjudged[at + 1],
                       MachineRecord(unjudged[at], unjudged[at + 3],
                                     loads(unjudged[at + 2]) if unjudged[at + 2] else {}))
                      for at in range(0, len(unjudged), 4)],
            pending=dict(sorted(waiting.items())),
            quarantines=_lasting_quarantines(_pairs(quarantines), format_lastseen(now)),
            inventory=set(inventory))

    # -- Taskcluster: quarantines, the poll, backfill ---------------------------

    def replace_quarantines(self, queue: str, quarantines: Mapping[str, Quarantine]) -> int:
        """Make `quarantines` (machine id -> its quarantine) the whole set of `queue`'s, at once:
        a machine of that queue not in it is no longer quarantined. The entries changed."""
        wanted = {machine_id: _quarantine_value(quarantine._replace(queue=queue))
                  for machine_id, quarantine in quarantines.items()}
        return int(self._replace_quarantines(keys=[self.keys.quarantine, self.keys.version],
                                             args=[queue, orjson.dumps(wanted)]))

    def set_quarantine(self, machine_id: str, quarantine: Quarantine | None) -> None:
        """Record one machine's quarantine (None: lifted) at once, as the CLI just set it."""
        pipe = self.redis.pipeline(transaction=True)
        if quarantine is None:
            pipe.hdel(self.keys.quarantine, machine_id)
        else:
            pipe.hset(self.keys.quarantine, machine_id, _quarantine_value(quarantine))
        pipe.incr(self.keys.version)
        pipe.execute()

    def quarantines(self, now: datetime | None = None) -> dict[str, Quarantine]:
        """Machine id -> its quarantine as last read from Taskcluster (or set by the CLI);
        given `now`, only those lasting past it."""
        return _lasting_quarantines(
            self.redis.hgetall(self.keys.quarantine),  # type: ignore[arg-type]
            None if now is None else format_lastseen(now))

    def take_taskcluster_turn(self, holder: str, seconds: float) -> bool:
        """True when this holder may poll Taskcluster now: nobody polled in the last `seconds`."""
        return bool(self.redis.set(self.keys.taskcluster_turn, holder, nx=True,
                                   px=max(1, int(seconds * 1000))))

    def taskcluster_polled(self, now: datetime, error: str | None = None) -> None:
        """Note one poll of Taskcluster: complete and good (error None), or failed with `error`
        (one line, no credential)."""
        at = format_lastseen(now)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self.keys.taskcluster, "polls", 1)
        if error is None:
            pipe.hset(self.keys.taskcluster, mapping={"last_good_poll_at": at, "last_poll_at": at,
                                                     "consecutive_failures": 0})
        else:
            pipe.hincrby(self.keys.taskcluster, "failures", 1)
            pipe.hincrby(self.keys.taskcluster, "consecutive_failures", 1)
            pipe.hset(self.keys.taskcluster, mapping={"last_poll_at": at, "last_error": error[:300],
                                                     "last_error_at": at})
        pipe.execute()

    def taskcluster_status(self) -> dict[str, Any]:
        """The poll's status: last_good_poll_at, last_poll_at, last_error, last_error_at (str or
        None) and the counters consecutive_failures, polls, failures (int)."""
        stored = self.redis.hgetall(self.keys.taskcluster)
        status: dict[str, Any] = {name: stored.get(name) for name in (
            "last_good_poll_at", "last_poll_at", "last_error", "last_error_at")}
        status.update((name, int(stored.get(name) or 0)) for name in TASKCLUSTER_COUNTERS)
        return status

    def backfill(self, items: Sequence[BackfillItem], chunk: int = 5000) -> tuple[int, int]:
        """Raise lastseen (never lower it), firstseen and the worker type of machines from
        Taskcluster's worker list, all or nothing; (written, kept because newer)."""
        rows = [(item.machine_id, format_lastseen(item.lastseen),
                 "" if item.firstseen is None else format_lastseen(item.firstseen),
                 item.provisioner, item.worker_type) for item in items]

        def queue_writes(pipe: Any) -> None:
            pipe.multi()
            for start in range(0, len(rows), chunk):
                self._backfill(keys=[self.keys.machines, self.keys.machine_records, self.keys.version,
                                     self.keys.machine_order],
                               args=[orjson.dumps(rows[start:start + chunk]), self.prefix],
                               client=pipe)
        written = kept = 0
        for chunk_written, chunk_kept in self._all_or_nothing(queue_writes):
            written, kept = written + int(chunk_written), kept + int(chunk_kept)
        return written, kept


def _pairs(flat: list[str]) -> dict[str, str]:
    """A hash as a script returns it (field, value, ...) as a dict."""
    pairs = iter(flat)
    return dict(zip(pairs, pairs, strict=True))


def _inventory(stored: Mapping[str, str]) -> dict[str, str | None]:
    # "" stands for "no worker type": a worker type is never empty
    return {machine_id: worker_type or None for machine_id, worker_type in stored.items()}


def _lasting_quarantines(stored: Mapping[str, str], cutoff: str | None) -> dict[str, Quarantine]:
    """Machine id -> its quarantine, of the stored ones lasting past `cutoff` (None: any)."""
    found = {}
    for machine_id, raw in stored.items():
        quarantine = _lasting_quarantine(raw, cutoff)
        if quarantine is not None:
            found[machine_id] = quarantine
    return found


def _lasting_quarantine(raw: str | None, cutoff: str | None) -> Quarantine | None:
    """A stored quarantine, when there is one lasting past `cutoff` (a lastseen; None: any)."""
    if raw is None:
        return None
    value = orjson.loads(raw)
    quarantine = Quarantine(value["until"], value.get("reason"), value.get("by"),
                            value.get("queue", ""))
    return quarantine if cutoff is None or quarantine.until > cutoff else None


def _quarantine_value(quarantine: Quarantine) -> str:
    # sorted keys: the script compares stored and new values as strings
    return orjson.dumps({"until": quarantine.until, "reason": quarantine.reason, "by": quarantine.by,
                         "queue": quarantine.queue}, option=orjson.OPT_SORT_KEYS).decode()
