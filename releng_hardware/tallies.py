"""The machine index's rules in Python, pure: a machine's group, its judgement (what its record
alone says), and /summary counted from the index's figures instead of from every machine.

The store keeps, per group, its machines ordered by lastseen and those running ordered by
their run's start (so the time-based problems are counts between cutoffs), and the counts of
each judgement's codes (lua/machine_index.lua). A judgement is made here, by the problem rules
of `problems`, of every machine written since it was last judged: the scripts that write a
machine mark it unjudged, and whoever reads the figures judges those first (snapshot).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping, NamedTuple

from .fleet import GroupKey, busy_queues, summary_answer, summary_group
from .identifiers import split_machine_id
from .problems import (RECORD_PROBLEMS, Thresholds, calls_for_attention, facts_of,
                       record_problems)
from .records import MachineRecord
from .store import FleetFigures
from .times import LASTSEEN_FORMAT, LASTSEEN_LENGTH, epoch_seconds

# What joins a group's parts, and what a judgement's: neither is in an identifier.
GROUP_SEPARATOR = "\t"
# Counted beside the record's problems: /summary's last_task_exception.
LAST_TASK_EXCEPTION = "last_task_exception"
# /summary's seen_within_1h.
SEEN_WITHIN_SECONDS = 3600


def group_key(machine_id: str, details: Mapping[str, Any] | None) -> str:
    """The group of a machine (lua/machine_index.lua's rule): its datacenter, provisioner and
    worker type; a machine without a record (None) has neither."""
    datacenter, _ = split_machine_id(machine_id)
    if details is None:
        return GROUP_SEPARATOR.join((datacenter, "", ""))
    return GROUP_SEPARATOR.join((datacenter, _text(details.get("provisioner")),
                                 _text(details.get("worker_type"))))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def split_group(group: str) -> GroupKey:
    """A group's (datacenter, provisioner, worker type), as /summary keys its groups."""
    datacenter, provisioner, worker_type = group.split(GROUP_SEPARATOR)
    return datacenter, provisioner, worker_type


def lastseen_score(text: str | None) -> int:
    """A lastseen-format time as the index orders machines by it (lua/machine_index.lua's
    lastseen_score): epoch microseconds; 0 when unreadable."""
    if not text or len(text) != LASTSEEN_LENGTH:
        return 0
    try:
        return score(datetime.strptime(text, LASTSEEN_FORMAT))
    except ValueError:
        return 0


def is_stale_in_index(lastseen: str | None, cutoffs: "Cutoffs") -> bool:
    """Whether the index counts a machine of this lastseen stale at the cutoffs."""
    return lastseen_score(lastseen) <= cutoffs.stale


def is_hung_in_index(details: Mapping[str, Any], cutoffs: "Cutoffs") -> bool:
    """Whether the index counts a machine of this record hung at the cutoffs (its place in
    index:running)."""
    return (details.get("state") == "running" and bool(details.get("task_time"))
            and lastseen_score(details["task_time"]) < cutoffs.hung)


def score(moment: datetime) -> int:
    """A time as the index orders machines by it: epoch microseconds (lua/machine_index.lua's
    lastseen_score of its lastseen)."""
    return round(epoch_seconds(moment) * 1_000_000)


class Judgement(NamedTuple):
    """What a machine's record alone says: its group, its record problems (and
    LAST_TASK_EXCEPTION), whether they call for someone on duty."""

    group: str
    codes: tuple[str, ...]
    attention: bool

    def encoded(self) -> str:
        """As index:judged holds it: group, codes, attention flag, one line each."""
        return "\n".join((self.group, " ".join(self.codes), "1" if self.attention else "0"))

    @classmethod
    def decode(cls, text: str) -> "Judgement":
        group, codes, attention = text.split("\n")
        return cls(group, tuple(codes.split()), attention == "1")


def judge_record(record: MachineRecord, limits: Thresholds) -> Judgement:
    """The judgement of a machine seen, from its record."""
    details = record.details
    problems = record_problems(facts_of(record, None, None), limits)
    codes = tuple(problems)
    if details.get("task_id") is not None and details.get("state") == "exception":
        codes += (LAST_TASK_EXCEPTION,)
    return Judgement(group_key(record.machine_id, details), codes, calls_for_attention(problems))


def limits_fingerprint(limits: Thresholds) -> str:
    """What the judgements depend on among the thresholds: a change rebuilds the index."""
    return "|".join(f"{value!r}" for value in (
        limits.failure_streak, limits.success_rate_min, limits.exceptions_max, limits.slow_factor))


class Cutoffs(NamedTuple):
    """The index's cutoffs for a request at `now` (epoch microseconds)."""

    stale: int  # seen at or before it: stale
    seen_within: int  # seen at or after it: seen within the hour
    hung: int  # running since before it: hung

    @classmethod
    def at(cls, now: datetime, limits: Thresholds) -> "Cutoffs":
        at = score(now)
        return cls(at - round(limits.stale_after * 1_000_000), at - SEEN_WITHIN_SECONDS * 1_000_000,
                   at - round(limits.hung_after * 1_000_000))


def summary_from_index(figures: FleetFigures, limits: Thresholds, pending: Mapping[str, int],
                       inventory: Mapping[str, str | None], seen_listed: Mapping[str, MachineRecord],
                       quarantined: Iterable[str], quarantined_seen: Mapping[str, MachineRecord],
                       provisioner: str | None) -> dict[str, Any]:
    """/summary (fleet.summary's answer) from the index's figures.

    The unjudged machines of `figures` are judged here and counted instead of their stored
    judgements. `seen_listed` holds the inventory's machines that were seen, `quarantined` every
    machine quarantined now, `quarantined_seen` those of them seen; `provisioner` is the one the
    never-seen machines count under (snapshot.read_fleet's rule).
    """
    busy = busy_queues(pending)
    groups: dict[GroupKey, dict[str, Any]] = {}

    def group_of(key: GroupKey) -> dict[str, Any]:
        found = groups.get(key)
        if found is None:
            found = groups[key] = summary_group(key)
        return found

    judged_counts: dict[str, int] = dict(figures.counts)
    for _, _, record, stored, _ in figures.unjudged:
        if stored is not None:
            _count(judged_counts, Judgement.decode(stored), -1)
        _count(judged_counts, judge_record(record, limits), 1)
    for figure in figures.groups:
        if not figure.machines:
            continue
        key = split_group(figure.group)
        group = group_of(key)
        idle = figure.stale if f"{key[1] or None}/{key[2] or None}" in busy else 0
        group.update(total=figure.machines, seen_within_1h=figure.seen_within, stale=figure.stale,
                     idle_with_work_waiting=idle)
        problems = group["problems"]
        problems.update(stale=figure.stale, idle_with_work_waiting=idle, hung_task=figure.hung)
        for code in RECORD_PROBLEMS:
            problems[code] = judged_counts.get(f"{figure.group}\n{code}", 0)
        group["last_task_exception"] = judged_counts.get(f"{figure.group}\n{LAST_TASK_EXCEPTION}", 0)
    never_seen_group: dict[str, GroupKey] = {}
    for machine_id, worker_type in inventory.items():
        listed = seen_listed.get(machine_id)
        if listed is None:
            key = (split_machine_id(machine_id)[0], provisioner or "", worker_type or "")
            never_seen_group[machine_id] = key
            group = group_of(key)
            group["never_seen"] += 1
            group["problems"]["never_seen"] += 1
        else:
            group = group_of(split_group(group_key(machine_id, listed.details)))
            group["not_in_inventory_listed"] = group.get("not_in_inventory_listed", 0) + 1
        group["expected"] += 1
    for group in groups.values():
        listed = group.pop("not_in_inventory_listed", 0)
        if inventory:
            group["problems"]["not_in_inventory"] = group["total"] - listed
    for machine_id in quarantined:
        seen = quarantined_seen.get(machine_id)
        if seen is not None:
            group_of(split_group(group_key(machine_id, seen.details)))["quarantined"] += 1
        elif machine_id in never_seen_group:
            group_of(never_seen_group[machine_id])["quarantined"] += 1
    return summary_answer(groups, pending, limits.stale_after)


def _count(counts: dict[str, int], judgement: Judgement, by: int) -> None:
    for code in judgement.codes:
        field = f"{judgement.group}\n{code}"
        counts[field] = counts.get(field, 0) + by
