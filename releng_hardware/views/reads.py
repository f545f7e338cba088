"""The reads behind every view: the store read once, then the pure fleet views applied at `now`."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from itertools import chain
from typing import Any, Callable, Iterable, Mapping, NamedTuple, TypeVar

from ..core.config import Config
from .fields import CountedMachine, Machine, MachineDetail
from .fleet import (MachineQuery, busy_queues, counted_json, machine_json, never_seen_records,
                    recent_tasks, select, summary)
from ..core.problems import Cutoffs, Thresholds, calls_for_attention
from ..core.records import MachineRecord, Quarantine
from ..store.keys import ORDER_SEPARATOR, order_member
from ..store.base import WRITES_REFUSED
from ..store.index import NOT_BUILT, FleetFigures, JudgementWrite
from ..store.machines import MachineDetailRead, Store
from .machine_index import (Judgement, ViewsAnswer, encode_view, index_fingerprint,
                      is_hung_in_index, is_stale_in_index, judge_record, judge_with_view,
                      machines_from_views, summary_from_index)

# The machines of the order a page of /machines judges at most, whatever its filters match:
# the bound on a page's cost (a filtered page may hold fewer than its limit, with a cursor).
SCAN_BUDGET = 5000
# A filtered page reads the order this many machines at a time (an unfiltered one, its limit).
FILTERED_CHUNK = 1000
# The machines a read of the machine index judges itself at most; when more are unjudged (after
# a fill, a build or a burst of traffic) it judges them this many at a time first, storing the
# judgements, so that no script returns an unbounded answer.
JUDGE_CHUNK = 2000
# How long a read waits for the machine index to be built or its backlog judged, in seconds (a
# release that changes the index's fingerprint rebuilds it: about 1.4 s at 10,000 machines).
# Past it the request is answered the long way, judging every machine (read_fleet), and the steps
# done so far stay done for the next read.
READY_WITHIN = 5.0

log = logging.getLogger(__name__)


class IndexNotReady(Exception):
    """The machine index was not ready within its deadline: answer from every machine."""


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


def read_machine(store: Store, config: Config, machine: MachineRecord | MachineDetailRead,
                 now: datetime) -> MachineDetail:
    """One machine as the API shows it at `now`, with its recent tasks, judged against the work
    waiting now: from Store.machine_detail read at `now` (one round trip), or from a record,
    the rest of its facts then read in one more."""
    if isinstance(machine, MachineRecord):
        read = store.machine_detail(machine.machine_id, now, runs=0)._replace(record=machine)
    else:
        read = machine
    record = read.record
    if record is None:
        raise ValueError("a machine never seen has no detail")
    root_url = config.taskcluster_root_url
    shown = machine_json(record, now, root_url, busy_queues(read.pending),
                         Thresholds.from_config(config), in_inventory=read.in_inventory,
                         quarantine=read.quarantine)
    return {**shown, "recent_tasks": recent_tasks(record.history, config.recent_tasks, root_url)}


class Page(NamedTuple):
    """Some machines of /machines in its order, and where the next page starts."""

    machines: list[Machine | CountedMachine]
    # the place in the order the next page starts after; None when nothing is left
    next_place: str | None


def pages_in_machine_order(query: MachineQuery) -> bool:
    """True when a page of the query costs the page: the store keeps its order (hostname, then
    datacenter, either way), and the machines shown are all in `machines` (no never-seen)."""
    return query.sort.lstrip("-") == "machine" and not query.include_never_seen


def read_page(store: Store, config: Config, now: datetime, query: MachineQuery, limit: int,
              after: bytes | None, *,
              view: Callable[..., Machine | CountedMachine] = machine_json) -> Page:
    """Up to `limit` machines of the query's answer after the place `after` (None: from the
    start), as `view` shows them, judged as read_fleet judges them.

    Where pages_in_machine_order, it reads the store's machine order and only the machines
    it examines, at most SCAN_BUDGET a page; otherwise it reads the whole fleet, as the
    unpaged answer does, and cuts the page out of it.
    """
    if not pages_in_machine_order(query):
        return _page_of_fleet(store, config, now, query, limit, after, view)
    busy = busy_queues(store.pending_counts(now))
    limits = Thresholds.from_config(config)
    root_url = config.taskcluster_root_url
    reverse = query.sort.startswith("-")
    chunk = max(limit, FILTERED_CHUNK) if query.filtered else limit
    shown: list[Machine | CountedMachine] = []
    place: str | bytes | None = after
    examined = 0
    while True:
        count = min(chunk, SCAN_BUDGET - examined)
        part = store.machine_order_page(place, count, now, reverse=reverse)
        examined += count
        member_of = {entry.record.machine_id: entry.member for entry in part.entries}
        matches = select([view(entry.record, now, root_url, busy, limits,
                               in_inventory=entry.in_inventory, quarantine=entry.quarantine)
                          for entry in part.entries], query)
        wanted = limit - len(shown)
        if len(matches) >= wanted:
            shown += matches[:wanted]
            more = len(matches) > wanted or part.more
            return Page(shown, member_of[shown[-1]["id"]] if more else None)
        shown += matches
        if not part.more or part.last is None:
            return Page(shown, None)
        place = part.last
        if examined >= SCAN_BUDGET:
            return Page(shown, place)


def _page_of_fleet(store: Store, config: Config, now: datetime, query: MachineQuery, limit: int,
                   after: bytes | None, view: Callable[..., Machine | CountedMachine]) -> Page:
    fleet = read_fleet(store, config, now, with_never_seen=query.include_never_seen, view=view)
    selected = select(fleet.machines + fleet.never_seen, query)
    place = _machine_place if query.sort.lstrip("-") == "machine" else _lastseen_place
    start = 0
    if after is not None:
        # the answer is in the order of its places: the page starts at the first one past `after`
        reverse = query.sort.startswith("-")
        start = next((at for at, machine in enumerate(selected)
                      if (place(machine).encode() < after if reverse
                          else place(machine).encode() > after)), len(selected))
    shown = selected[start:start + limit]
    more = start + limit < len(selected)
    return Page(shown, place(shown[-1]) if more else None)


def _machine_place(machine: Mapping[str, Any]) -> str:
    return order_member(machine["id"])


def _lastseen_place(machine: Mapping[str, Any]) -> str:
    # select orders by (lastseen, id), a never-seen machine's lastseen counting as ""
    return ORDER_SEPARATOR.join((machine["lastseen"] or "", machine["id"]))


def judge_unjudged(store: Store, limits: Thresholds, count: int = JUDGE_CHUNK, *,
                   root_url: str) -> int:
    """Judge up to `count` unjudged machines and store the judgements with their views (their
    links to `root_url`); how many were stored."""
    return store.judge_with_views([
        JudgementWrite(unjudged.machine_id, unjudged.generation,
                       *judge_with_view(unjudged.record, limits, root_url))
        for unjudged in store.unjudged(count)])


Answer = TypeVar("Answer")


def _read_when_ready(store: Store, read: Callable[[str], Answer | int], limits: Thresholds,
                     root_url: str, clock: Callable[[], float]) -> Answer:
    """read(the index's fingerprint) once the machine index answers it: built a step at a time
    first, or its backlog judged a chunk at a time, while it answers NOT_BUILT or
    TOO_MANY_UNJUDGED; IndexNotReady once READY_WITHIN seconds of `clock` have passed."""
    fingerprint = index_fingerprint(limits, root_url)
    within = READY_WITHIN
    deadline = clock() + within
    while True:
        answer = read(fingerprint)
        if not isinstance(answer, int):
            return answer
        if clock() >= deadline:
            raise IndexNotReady(f"the machine index was not ready within {within:g} s")
        if answer == NOT_BUILT:
            store.build_machine_index_step(fingerprint)
        else:
            judge_unjudged(store, limits, root_url=root_url)


class IndexRead(NamedTuple):
    """The machine index's figures at one moment, and the fresh judgement of each machine they
    hold unjudged (made once, for every count of the read)."""

    figures: FleetFigures
    fresh: dict[str, Judgement]


def read_index(store: Store, config: Config, now: datetime, stale_after: float | None = None, *,
               clock: Callable[[], float] = time.monotonic) -> IndexRead:
    """The machine index's figures at `now`, the index built and its backlog judged first
    (IndexNotReady when that takes longer than READY_WITHIN by `clock`)."""
    limits = Thresholds.from_config(config, stale_after)
    root_url = config.taskcluster_root_url
    cutoffs = Cutoffs.at(now, limits)
    figures = _read_when_ready(
        store, lambda fingerprint: store.fleet_figures(*cutoffs, fingerprint, JUDGE_CHUNK),
        limits, root_url, clock)
    fresh = {unjudged.machine_id: judge_record(unjudged.record, limits)
             for unjudged in figures.unjudged}
    # what this read judged need not be judged by the next
    store.judge_with_views([
        JudgementWrite(unjudged.machine_id, unjudged.generation,
                       fresh[unjudged.machine_id].encoded(), encode_view(unjudged.record, root_url))
        for unjudged in figures.unjudged if unjudged.record.lastseen is not None])
    return IndexRead(figures, fresh)


def read_summary(store: Store, config: Config, now: datetime, stale_after: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """/summary at `now`, from the machine index: it reads the groups' figures, the inventory
    and the quarantined machines, never every machine; from every machine judged when the
    index is not ready in time."""
    try:
        return read_counts(store, config, now, stale_after, clock=clock).summary
    except IndexNotReady as exc:
        log.warning("%s: /summary counted from every machine judged (read_fleet)", exc)
    fleet = read_fleet(store, config, now, stale_after, view=counted_json)
    return summary(fleet.machines + fleet.never_seen, fleet.pending,
                   Thresholds.from_config(config, stale_after).stale_after, fleet.inventory)


class FleetCounts(NamedTuple):
    """/summary and the dashboard's section sizes at `now`, from the machine index, with what
    reading the sections' rows needs."""

    summary: dict[str, Any]
    total: int  # machines seen, and the inventory's never seen
    attention: int  # of them, those needing attention and not quarantined
    quarantined: int
    never_seen: list[MachineRecord]  # the inventory's machines never seen
    inventory: dict[str, str | None]
    quarantines: dict[str, Quarantine]
    # the machines of the inventory and of the quarantines that were seen, with their records
    looked_up: dict[str, MachineRecord]
    busy: set[str]
    limits: Thresholds


def read_counts(store: Store, config: Config, now: datetime, stale_after: float | None = None, *,
                clock: Callable[[], float] = time.monotonic) -> FleetCounts:
    """What the machine index counts at `now`: reads the groups' figures, the inventory and the
    quarantined machines, never every machine (IndexNotReady: see read_index)."""
    limits = Thresholds.from_config(config, stale_after)
    read = read_index(store, config, now, stale_after, clock=clock)
    pending = store.pending_counts(now)
    busy = busy_queues(pending)
    inventory = store.inventory()
    quarantines = store.quarantines(now)
    looked_up = store.records_of(sorted(set(inventory) | set(quarantines)))
    provisioner = config.provisioner_ids[0] if len(config.provisioner_ids) == 1 else None
    counted = summary_from_index(read.figures, read.fresh, limits, pending, inventory,
                                 {machine_id: looked_up[machine_id] for machine_id in inventory
                                  if machine_id in looked_up},
                                 quarantines, looked_up, provisioner)
    never_seen = never_seen_records(inventory, looked_up, provisioner)
    attention = _seen_needing_attention(read, limits, now) + len(never_seen)
    # a quarantined machine is in someone's hands: it is counted apart
    root_url = config.taskcluster_root_url
    for machine_id, quarantine in quarantines.items():
        record = looked_up.get(machine_id)
        if record is None and machine_id in inventory:  # never seen: it needs attention
            attention -= 1
        elif record is not None and calls_for_attention(counted_json(
                record, now, root_url, busy, limits, in_inventory=None,
                quarantine=quarantine)["problems"]):
            attention -= 1
    return FleetCounts(counted, counted["totals"]["total"] + len(never_seen), attention,
                       counted["totals"]["quarantined"], never_seen, inventory, quarantines,
                       looked_up, busy, limits)


def _seen_needing_attention(read: IndexRead, limits: Thresholds, now: datetime) -> int:
    """The machines seen that need attention: a judgement that says so, stale or hung.

    The index counts the union from its judged machines (index:attention, by their lastseen
    when judged), the stale ones and the hung ones neither judged so nor stale; each unjudged
    machine is then counted as its fresh judgement and lastseen say instead of as the index
    counted it.
    """
    cutoffs = Cutoffs.at(now, limits)
    judged = read.figures.attention
    stale = sum(group.stale for group in read.figures.groups)
    count = judged.judged + stale - judged.judged_stale + judged.hung_only
    for unjudged in read.figures.unjudged:
        is_stale = is_stale_in_index(unjudged.record.lastseen, cutoffs)
        is_hung = is_hung_in_index(unjudged.record.details, cutoffs)
        score = unjudged.attention_score
        listed = score is not None
        counted = (listed + is_stale - (score is not None and score <= cutoffs.stale)
                   + (is_hung and not listed and not is_stale))
        needs = is_stale or is_hung or read.fresh[unjudged.machine_id].attention
        count += int(needs) - counted
    return count


# A dashboard page read from the machine index walks the machine order at most this far; a page
# further in is read as before, from every machine.
WALK_BUDGET = 20_000
WALK_CHUNK = 500


class SectionRows(NamedTuple):
    """The rows of each section of a dashboard page, as machine_json shows them."""

    attention: list[Machine]
    quarantined: list[Machine]
    others: list[Machine]


def read_section_rows(store: Store, config: Config, now: datetime, counts: FleetCounts,
                      attention: slice, quarantined: slice, others: slice) -> SectionRows | None:
    """The machines of each section's slice, in the machine order (hostname, then datacenter),
    read by walking the order from its start only as far as the slices need; None when that is
    further than WALK_BUDGET machines."""
    root_url, busy, limits = config.taskcluster_root_url, counts.busy, counts.limits

    def full(record: MachineRecord, in_inventory: bool | None,
             quarantine: Quarantine | None) -> Machine:
        return machine_json(record, now, root_url, busy, limits, in_inventory=in_inventory,
                            quarantine=quarantine)

    loaded = bool(counts.inventory)
    held = [record for record in chain(counts.looked_up.values(), counts.never_seen)
            if record.machine_id in counts.quarantines]
    in_hands = sorted(held, key=lambda record: order_member(record.machine_id))
    quarantined_rows = [full(record, record.machine_id in counts.inventory if loaded else None,
                             counts.quarantines[record.machine_id])
                        for record in in_hands[quarantined]]
    wanted_attention, wanted_others = attention.stop or 0, others.stop or 0
    needing: list[Machine] = []
    rest: list[Machine] = []
    never_seen = sorted((record for record in counts.never_seen
                         if record.machine_id not in counts.quarantines),
                        key=lambda record: order_member(record.machine_id))
    next_never_seen, place, examined = 0, None, 0
    while len(needing) < wanted_attention or len(rest) < wanted_others:
        if examined >= WALK_BUDGET:
            return None
        part = store.machine_order_page(place, WALK_CHUNK, now)
        examined += WALK_CHUNK
        batch = [(entry.member, entry.record, entry.in_inventory, entry.quarantine)
                 for entry in part.entries if entry.quarantine is None]
        # the never-seen machines that sort among (or, at the end, after) those read
        while next_never_seen < len(never_seen) and (
                not part.more or part.last is None
                or order_member(never_seen[next_never_seen].machine_id) <= part.last):
            record = never_seen[next_never_seen]
            batch.append((order_member(record.machine_id), record, True, None))
            next_never_seen += 1
        batch.sort(key=lambda row: row[0])
        for _, record, in_inventory, quarantine in batch:
            light = counted_json(record, now, root_url, busy, limits, in_inventory=in_inventory,
                                 quarantine=quarantine)
            if calls_for_attention(light["problems"]):
                if len(needing) < wanted_attention:
                    needing.append(full(record, in_inventory, quarantine))
            elif len(rest) < wanted_others:
                rest.append(full(record, in_inventory, quarantine))
        if not part.more or part.last is None:
            break
        place = part.last
    return SectionRows(needing[attention], quarantined_rows, rest[others])


def read_machines_from_views(store: Store, config: Config, now: datetime, *,
                             reverse: bool = False,
                             clock: Callable[[], float] = time.monotonic) -> ViewsAnswer | None:
    """/machines with every field, unfiltered, by hostname (reverse: backwards), at `now`: the
    bytes read_fleet's machines would encode to, spliced from the machine index's views in one
    read; the unjudged machines judged here and stored. None when some machine has no view (its
    answer could not be encoded, or a judgement was stored without one), or when the index
    needs writes Redis refuses (memory full, a read-only replica) or is not ready within
    READY_WITHIN by `clock`: read_fleet then."""
    limits = Thresholds.from_config(config)
    root_url = config.taskcluster_root_url
    try:
        read = _read_when_ready(
            store, lambda fingerprint: store.machine_views(now, fingerprint, JUDGE_CHUNK),
            limits, root_url, clock)
    except WRITES_REFUSED:
        return None
    except IndexNotReady as exc:
        log.warning("%s: /machines built from every machine judged (read_fleet)", exc)
        return None
    views, judgements = read.views, read.judgements
    judged: list[JudgementWrite] = []
    for machine_id, generation, record in read.unjudged:
        judgement, view = judge_with_view(record, limits, root_url)
        judgements[machine_id] = judgement
        if view is None:
            views.pop(machine_id, None)
        else:
            views[machine_id] = view
        judged.append(JudgementWrite(machine_id, generation, judgement, view))
    try:  # what this read judged need not be judged by the next
        store.judge_with_views(judged)
    except WRITES_REFUSED:
        pass  # the next read judges them again: this answer holds without
    return machines_from_views(read.lastseen_by_id, views, judgements, now, limits,
                               busy_queues(read.pending), read.inventory or None,
                               read.quarantines, reverse)
