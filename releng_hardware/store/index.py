"""The store's derived data: the machine index (what /summary and the dashboard count without
reading every machine: groups, judgements, views; lua/machine_index.lua) and the machine order
(what /machines pages by; lua/machine_order.lua), with the reads that answer from them.

Each script's reply is read by one decoder below (_decode_<script>), beside the NamedTuple it
returns, so a reply's layout is read in one place.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import orjson
from redis.commands.core import Script

from .base import StorePart, decode_record, pairs, pending_after
from .keys import order_member_id
from .quarantines import lasting_quarantine, lasting_quarantines
from .scripts import script
from ..core.records import MachineRecord, Quarantine
from ..core.times import format_lastseen

_BUILD_MACHINE_ORDER = script("machine_order", "build_steps", "build_machine_order")
_MACHINE_PAGE = script("machine_page")
# What the machine order is kept for (machine_order_state), so that a release whose members are
# made otherwise builds it again: a digest of the script that builds it, whose text holds every
# rule a member is made by (machine_order.lua's order_member and the prelude's ORDER_SEPARATOR,
# the parts every script that adds a machine starts with). Of these only, not the release's:
# a release changing none of them pages on without a rebuild.
ORDER_DIGEST = hashlib.sha256(_BUILD_MACHINE_ORDER.encode()).hexdigest()[:16]
_BUILD_MACHINE_INDEX = script("machine_index", "build_steps", "build_machine_index")
_JUDGE = script("machine_index", "judge")
_FLEET_FIGURES = script("fleet_figures")
# The read scripts that answer with the work waiting count it by one rule (pending_after).
_MACHINE_VIEWS = script("pending_counts", "machine_views")
# Machines written before the machine order existed are added to it this many per script
# call: a few milliseconds of Redis each, however big the fleet.
ORDER_BUILD_STEP = 10_000
# The machine index is built this many machines per script call (each decodes their records).
INDEX_BUILD_STEP = 5_000
# fleet_figures' answers when it has no figures: build the index, or judge some machines first
NOT_BUILT, TOO_MANY_UNJUDGED = -2, -1


class UnjudgedMachine(NamedTuple):
    """A machine written since it was last judged, with the generation read with its record, so
    that a judgement of it is stored only of the record judged (Store.judge_with_views)."""

    machine_id: str
    generation: str
    record: MachineRecord


class JudgementWrite(NamedTuple):
    """A judgement to store: of the machine's record of `generation`, encoded as index:judged
    holds it (machine_index.Judgement.encoded), with its view (None: none)."""

    machine_id: str
    generation: str
    judgement: str
    view: str | None = None


class OrderEntry(NamedTuple):
    """One machine of a page of the machine order, with what the views need of it."""

    member: str  # its place in the order
    record: MachineRecord
    quarantine: Quarantine | None  # lasting past the page's `now`
    in_inventory: bool | None  # None when no inventory is loaded


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
    unjudged: list[UnjudgedMachine]  # every machine unjudged, its record with its lastseen
    pending: dict[str, int]  # as pending_counts(now)
    quarantines: dict[str, Quarantine]  # as quarantines(now)
    inventory: set[str]  # the inventory's machines; empty when none is loaded


# The replies are Redis' nested arrays of str, int and None, typed by redis-py as Any.
def _decode_fleet_figures(reply: list[Any]) -> FleetFigures | int:
    """lua/fleet_figures.lua's reply: {0, unjudged (id, generation, record, stored judgement,
    lastseen, attention score: six each), groups (five each), counts (pairs), attention}, or
    {NOT_BUILT} / {TOO_MANY_UNJUDGED}."""
    if int(reply[0]) != 0:
        return int(reply[0])
    _, unjudged, groups, counts, attention = reply
    return FleetFigures(
        unjudged=[Unjudged(unjudged[at], unjudged[at + 1],
                           decode_record(unjudged[at], unjudged[at + 4], unjudged[at + 2]),
                           unjudged[at + 3],
                           None if unjudged[at + 5] is None else int(unjudged[at + 5]))
                  for at in range(0, len(unjudged), 6)],
        groups=[GroupFigures(groups[at], *(int(value) for value in groups[at + 1:at + 5]))
                for at in range(0, len(groups), 5)],
        counts={counts[at]: int(counts[at + 1]) for at in range(0, len(counts), 2)},
        attention=AttentionFigures(*(int(value) for value in attention)))


def _decode_machine_views(reply: list[Any], now: datetime) -> MachineViews | int:
    """lua/machine_views.lua's reply: {0, machines, views, judgements (hashes as pairs),
    unjudged (id, generation, record, lastseen: four each), pending (pairs), quarantines
    (pairs), inventory (ids)}, or {NOT_BUILT} / {TOO_MANY_UNJUDGED}."""
    if int(reply[0]) != 0:
        return int(reply[0])
    _, machines, views, judgements, unjudged, pending, quarantines, inventory = reply
    waiting = {pending[at]: int(pending[at + 1]) for at in range(0, len(pending), 2)}
    return MachineViews(
        lastseen_by_id=pairs(machines), views=pairs(views), judgements=pairs(judgements),
        unjudged=[UnjudgedMachine(unjudged[at], unjudged[at + 1],
                                  decode_record(unjudged[at], unjudged[at + 3], unjudged[at + 2]))
                  for at in range(0, len(unjudged), 4)],
        pending=dict(sorted(waiting.items())),
        quarantines=lasting_quarantines(pairs(quarantines), format_lastseen(now)),
        inventory=set(inventory))


def _decode_order_page(reply: list[Any], now: datetime) -> OrderPage:
    """lua/machine_page.lua's reply (once the order is complete): {more, inventory loaded, then
    member, lastseen, record, quarantine, listed: five per member}."""
    loaded, cutoff = bool(int(reply[1])), format_lastseen(now)
    entries, last = [], None
    for at in range(2, len(reply), 5):
        member, lastseen, raw, quarantine, listed = reply[at:at + 5]
        last = member
        if lastseen is None:  # not in `machines` (a hand-made edit): nothing to show
            continue
        entries.append(OrderEntry(
            member, decode_record(order_member_id(member), lastseen, raw),
            lasting_quarantine(quarantine, cutoff), bool(int(listed)) if loaded else None))
    return OrderPage(entries, bool(int(reply[0])), last)


def _decode_done(reply: Any) -> bool:
    """A build step's reply (build_machine_index.lua, build_machine_order.lua): 1 once done."""
    return bool(int(reply))


class IndexPart(StorePart):
    """The machine index and the machine order: built, judged, and read."""

    SCRIPTS: ClassVar[Mapping[str, str]] = {
        "_build_machine_order": _BUILD_MACHINE_ORDER, "_machine_page": _MACHINE_PAGE,
        "_build_machine_index": _BUILD_MACHINE_INDEX, "_judge": _JUDGE,
        "_fleet_figures": _FLEET_FIGURES, "_machine_views": _MACHINE_VIEWS}
    _build_machine_order: Script
    _machine_page: Script
    _build_machine_index: Script
    _judge: Script
    _fleet_figures: Script
    _machine_views: Script

    # -- the machine order: what /machines pages by ----------------------------------------

    def machine_order_page(self, after: str | bytes | None, count: int, now: datetime, *,
                           reverse: bool = False) -> OrderPage:
        """Up to `count` machines of the machine order after the member `after` (None: from the
        start; reverse: backwards, from the end), with their quarantine lasting past `now`.

        Reads those machines only, in one script. The order is built first when it is not
        complete for ORDER_DIGEST: once per deployment, and per release that changes how its
        members are made (build_machine_order).
        """
        start: str | bytes = ("+" if reverse else "-") if after is None else (
            b"(" + after if isinstance(after, bytes) else "(" + after)
        keys = [self.keys.machine_order, self.keys.machine_order_state, self.keys.machines,
                self.keys.machine_records, self.keys.quarantine, self.keys.inventory]
        args = [start, count, "1" if reverse else "0", ORDER_DIGEST]
        reply = self._machine_page(keys=keys, args=args)
        while int(reply[0]) == -1:
            self.build_machine_order()
            reply = self._machine_page(keys=keys, args=args)
        return _decode_order_page(reply, now)

    def build_machine_order(self, step: int = ORDER_BUILD_STEP) -> None:
        """Add every machine to the machine order, in steps of `step` (bounded scripts); does
        nothing once done for ORDER_DIGEST. For the machines written before the order existed,
        and for every machine once a release makes the order's members otherwise."""
        while not _decode_done(self._build_machine_order(
                keys=[self.keys.machines, self.keys.machine_order_state, self.keys.machine_order],
                args=[step, ORDER_DIGEST])):
            pass

    # -- the machine index: what /summary counts without reading every machine ---------

    def build_machine_index(self, fingerprint: str, step: int = INDEX_BUILD_STEP) -> None:
        """Place every machine in the machine index and mark it unjudged, in steps of `step`
        (bounded scripts); does nothing once done for the thresholds of `fingerprint`."""
        while not self.build_machine_index_step(fingerprint, step):
            pass

    def build_machine_index_step(self, fingerprint: str, step: int = INDEX_BUILD_STEP) -> bool:
        """One bounded step of build_machine_index; True once the index is built."""
        keys = [self.keys.machines, self.keys.machine_records, self.keys.index_state]
        return _decode_done(self._build_machine_index(keys=keys,
                                                      args=[self.prefix, step, fingerprint]))

    def unjudged(self, count: int) -> list[UnjudgedMachine]:
        """Up to `count` unjudged machines, each with the generation read with its record, so
        that judge() stores a judgement only of the record it judged."""
        # any `count` of them (HSCAN from the start would walk the buckets emptied by judging)
        ids: list[str] = self.redis.hrandfield(self.keys.index_unjudged, count)  # type: ignore[assignment]
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=True)
        pipe.hmget(self.keys.index_unjudged, ids)
        pipe.hmget(self.keys.machines, ids)
        pipe.hmget(self.keys.machine_records, ids)
        generations, lastseens, raws = pipe.execute()
        return [UnjudgedMachine(machine_id, generation, decode_record(machine_id, lastseen, raw))
                for machine_id, generation, lastseen, raw in zip(ids, generations, lastseens, raws,
                                                                 strict=True)
                if generation is not None and lastseen is not None]

    def judge(self, judgements: Sequence[JudgementWrite]) -> int:
        """Store judgements of machines not written since their generation was read, without
        views (a judgement's view is dropped); how many were stored."""
        return self.judge_with_views([judgement._replace(view=None) for judgement in judgements])

    def judge_with_views(self, judgements: Sequence[JudgementWrite]) -> int:
        """Store judgements with their views of machines not written since their generation was
        read; how many were stored."""
        if not judgements:
            return 0
        # as arrays: orjson refuses a NamedTuple
        return int(self._judge(keys=[self.keys.machines],
                               args=[self.prefix, orjson.dumps([list(judgement)
                                                                for judgement in judgements])]))

    def fleet_figures(self, stale_cutoff: int, seen_cutoff: int, hung_cutoff: int,
                      fingerprint: str, max_unjudged: int) -> FleetFigures | int:
        """The machine index's figures at one moment (lua/fleet_figures.lua; cutoffs in epoch
        microseconds), or NOT_BUILT / TOO_MANY_UNJUDGED."""
        return _decode_fleet_figures(self._fleet_figures(
            keys=[self.keys.machine_records, self.keys.machines],
            args=[self.prefix, stale_cutoff, seen_cutoff, hung_cutoff, max_unjudged, fingerprint]))

    def machine_views(self, now: datetime, fingerprint: str,
                      max_unjudged: int) -> MachineViews | int:
        """Every machine's lastseen, judgement and view, the unjudged ones' records, the tasks
        waiting, the quarantines lasting past `now` and the inventory, in one script
        (lua/machine_views.lua); or NOT_BUILT / TOO_MANY_UNJUDGED."""
        return _decode_machine_views(self._machine_views(
            keys=[self.keys.machines, self.keys.machine_records, self.keys.quarantine,
                  self.keys.inventory, self.keys.pending_queues],
            args=[self.prefix, pending_after(now), max_unjudged, fingerprint]), now)

    def records_of(self, machine_ids: Sequence[str]) -> dict[str, MachineRecord]:
        """The machines of `machine_ids` that were seen, with their records (two HMGETs)."""
        if not machine_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.machines, machine_ids)
        pipe.hmget(self.keys.machine_records, machine_ids)
        lastseens, raws = pipe.execute()
        return {machine_id: decode_record(machine_id, lastseen, raw)
                for machine_id, lastseen, raw in zip(machine_ids, lastseens, raws, strict=True)
                if lastseen is not None}
