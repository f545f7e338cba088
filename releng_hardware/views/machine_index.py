"""The machine index's rules in Python, pure: a machine's group, its judgement (what its record
alone says), and /summary counted from the index's figures instead of from every machine.

The store keeps, per group, its machines ordered by lastseen and those running ordered by
their run's start (so the time-based problems are counts between cutoffs), and the counts of
each judgement's codes (lua/machine_index.lua). A judgement is made here, by the problem rules
of `problems`, of every machine written since it was last judged: the scripts that write a
machine mark it unjudged, and whoever reads the figures judges those first (reads).
"""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Any, Container, Iterable, Mapping, NamedTuple

import orjson

from .derived import release_digest
from .fleet import (TIME_FIELD_JOINS, GroupCounts, GroupKey, busy_queues, lastseen_and_age,
                    machine_view_parts, sort_by_hostname, summary_answer)
from ..core.identifiers import queue_id, split_machine_id
from ..core.problems import (PROBLEMS, RECORD_PROBLEMS, RULES, Cutoffs, MachineFacts, Thresholds,
                             calls_for_attention, facts_of, record_problems)
from ..core.records import MachineRecord, Quarantine
from ..store.keys import GROUP_SEPARATOR, group_key, lastseen_score
from ..store.index import FleetFigures

# Counted beside the record's problems: /summary's last_task_exception.
LAST_TASK_EXCEPTION = "last_task_exception"


def split_group(group: str) -> GroupKey:
    """A group's (datacenter, provisioner, worker type), as /summary keys its groups."""
    datacenter, provisioner, worker_type = group.split(GROUP_SEPARATOR)
    return datacenter, provisioner, worker_type


def is_stale_in_index(lastseen: str | None, cutoffs: Cutoffs) -> bool:
    """Whether the index counts a machine of this lastseen stale at the cutoffs."""
    return lastseen_score(lastseen) <= cutoffs.stale


def is_hung_in_index(details: Mapping[str, Any], cutoffs: Cutoffs) -> bool:
    """Whether the index counts a machine of this record hung at the cutoffs (its place in
    index:running)."""
    return (details.get("state") == "running" and bool(details.get("task_time"))
            and lastseen_score(details["task_time"]) < cutoffs.hung)


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


def summary_from_index(figures: FleetFigures, fresh: Mapping[str, Judgement], limits: Thresholds,
                       pending: Mapping[str, int],
                       inventory: Mapping[str, str | None], seen_listed: Mapping[str, MachineRecord],
                       quarantined: Iterable[str], quarantined_seen: Mapping[str, MachineRecord],
                       provisioner: str | None) -> dict[str, Any]:
    """/summary from the index's figures: each group's fleet.GroupCounts, answered by
    fleet.summary_answer as fleet.summary's counts from every machine are.

    The unjudged machines of `figures` are counted by their fresh judgements (`fresh`, by
    machine id) instead of their stored ones. `seen_listed` holds the inventory's machines that
    were seen, `quarantined` every machine quarantined now, `quarantined_seen` those of them
    seen; `provisioner` is the one the never-seen machines count under (reads.read_fleet's
    rule).
    """
    busy = busy_queues(pending)
    groups: dict[GroupKey, GroupCounts] = {}

    def group_of(key: GroupKey) -> GroupCounts:
        found = groups.get(key)
        if found is None:
            found = groups[key] = GroupCounts()
        return found

    judged_counts: dict[str, int] = dict(figures.counts)
    for unjudged in figures.unjudged:
        if unjudged.stored is not None:
            _count(judged_counts, Judgement.decode(unjudged.stored), -1)
        _count(judged_counts, fresh[unjudged.machine_id], 1)
    for figure in figures.groups:
        if not figure.machines:
            continue
        key = split_group(figure.group)
        group = group_of(key)
        # the queue as the machines' facts name it (facts_of): a part they lack is None
        idle = figure.stale if queue_id(key[1] or None, key[2] or None) in busy else 0
        group.counts.update(total=figure.machines, seen_within_1h=figure.seen_within,
                            stale=figure.stale, idle_with_work_waiting=idle,
                            last_task_exception=judged_counts.get(
                                f"{figure.group}\n{LAST_TASK_EXCEPTION}", 0))
        problems = group.problems
        problems.update(stale=figure.stale, idle_with_work_waiting=idle, hung_task=figure.hung)
        for code in RECORD_PROBLEMS:
            problems[code] = judged_counts.get(f"{figure.group}\n{code}", 0)
    never_seen_group: dict[str, GroupKey] = {}
    seen_listed_in: dict[GroupKey, int] = {}  # group -> its machines seen that the inventory lists
    for machine_id, worker_type in inventory.items():
        listed = seen_listed.get(machine_id)
        if listed is None:
            key = (split_machine_id(machine_id)[0], provisioner or "", worker_type or "")
            never_seen_group[machine_id] = key
            group = group_of(key)
            group.counts["never_seen"] += 1
            group.problems["never_seen"] += 1
        else:
            key = split_group(group_key(machine_id, listed.details))
            group = group_of(key)
            seen_listed_in[key] = seen_listed_in.get(key, 0) + 1
        group.counts["expected"] += 1
    if inventory:
        for key, group in groups.items():
            group.problems["not_in_inventory"] = group.counts["total"] - seen_listed_in.get(key, 0)
    for machine_id in quarantined:
        seen = quarantined_seen.get(machine_id)
        if seen is not None:
            group_of(split_group(group_key(machine_id, seen.details))).counts["quarantined"] += 1
        elif machine_id in never_seen_group:
            group_of(never_seen_group[machine_id]).counts["quarantined"] += 1
    return summary_answer(groups, pending, limits.stale_after)


def _count(counts: dict[str, int], judgement: Judgement, by: int) -> None:
    for code in judgement.codes:
        field = f"{judgement.group}\n{code}"
        counts[field] = counts.get(field, 0) + by


def index_fingerprint(limits: Thresholds, root_url: str, code: str | None = None) -> str:
    """What the index's judgements and views depend on: the thresholds of limits_fingerprint,
    the Taskcluster root URL of the links and the code that makes them (`code`, by default
    derived.release_digest); a change rebuilds the index."""
    return f"{limits_fingerprint(limits)}|{root_url}|{release_digest() if code is None else code}"


# What joins a view's parts: JSON as orjson writes it never holds a raw NUL.
VIEW_SEPARATOR = "\0"


def encode_view(record: MachineRecord, root_url: str) -> str | None:
    """As index:views holds a machine's view: machine_json's answer for it without what time
    changes (fleet.machine_view_parts: head, middle, tail) and the facts the request's rules read
    of the record (its queue, its newest run's state and time, as JSON), joined by VIEW_SEPARATOR.
    None when machine_json's answer cannot be encoded (the full answer fails the same way)."""
    try:
        head, middle, tail = machine_view_parts(record, root_url)
    except orjson.JSONEncodeError:
        return None
    facts = facts_of(record, None, None)
    return VIEW_SEPARATOR.join((head.decode(), middle.decode(), tail.decode(), orjson.dumps(
        [facts.queue, facts.newest_state, facts.newest_time]).decode()))


def judge_with_view(record: MachineRecord, limits: Thresholds,
                    root_url: str) -> tuple[str, str | None]:
    """A machine's judgement (encoded) and view (encode_view), as judge.lua stores them."""
    return judge_record(record, limits).encoded(), encode_view(record, root_url)


# The rules a request applies to the views: every rule not of the record's (what time, the work
# waiting and the inventory change), in PROBLEMS' order.
_REQUEST_RULES = tuple((code, RULES[code]) for code in PROBLEMS if code not in RECORD_PROBLEMS)
_PROBLEM_ORDER = {code: at for at, code in enumerate(PROBLEMS)}.__getitem__
_JOIN_IDLE, _JOIN_PROBLEMS, _JOIN_QUARANTINE = (join.decode() for join in TIME_FIELD_JOINS)


class ViewsAnswer(NamedTuple):
    """/machines with every field, as machines_from_views spliced it."""

    body: bytes  # orjson.dumps of the machines machine_json shows, in order
    problems: list[tuple[str, ...]]  # each machine's problems, in the same order


def machines_from_views(lastseen_by_id: Mapping[str, str], views: Mapping[str, str],
                        judgements: Mapping[str, str], now: datetime, limits: Thresholds,
                        busy: Container[str], inventory: Container[str] | None,
                        quarantines: Mapping[str, Quarantine],
                        reverse: bool = False) -> ViewsAnswer | None:
    """Every machine of `lastseen_by_id` as machine_json shows it at `now`, ordered by hostname
    then datacenter (fleet.sort_by_hostname), spliced from its view and judgement: the bytes of
    orjson.dumps of those machines. `inventory` is None when none is loaded. None when a machine
    has no view or no judgement (the caller builds the answer the long way)."""
    rows = []
    for machine_id, stored in lastseen_by_id.items():
        view, judgement = views.get(machine_id), judgements.get(machine_id)
        if view is None or judgement is None:
            return None
        datacenter, hostname = split_machine_id(machine_id)
        rows.append((hostname, datacenter, machine_id, stored, view, judgement))
    if not rows:
        return ViewsAnswer(b"[]", [])
    sort_by_hostname(rows, reverse, itemgetter(0), itemgetter(1))
    ages = [lastseen_and_age(row[3], now)[1] for row in rows]
    # orjson writes each age as it would inside the machine: all of them in one call
    age_texts = orjson.dumps(ages)[1:-1].decode().split(",")
    record_codes: dict[str, tuple[str, ...]] = {}
    time_fields: dict[tuple[str, ...], str] = {}
    facts_read: dict[str, Any] = {}
    loads = orjson.loads
    out: list[str] = []
    shown: list[tuple[str, ...]] = []
    for (_, _, machine_id, _, view, judgement), age, age_text in zip(rows, ages, age_texts,
                                                                    strict=True):
        head, middle, tail, stored_facts = view.split(VIEW_SEPARATOR)
        facts = facts_read.get(stored_facts)
        if facts is None:
            facts = facts_read[stored_facts] = loads(stored_facts)
        queue, state, started = facts
        codes = record_codes.get(judgement)
        if codes is None:
            codes = record_codes[judgement] = tuple(
                code for code in Judgement.decode(judgement).codes if code != LAST_TASK_EXCEPTION)
        now_facts = MachineFacts(age, queue, "", state, None, started, True,
                                 None if inventory is None else machine_id in inventory)
        added = [code for code, rule in _REQUEST_RULES if rule(now_facts, now, limits, busy)]
        problems = tuple(sorted(codes + tuple(added), key=_PROBLEM_ORDER)) if added else codes
        fields = time_fields.get(problems)
        if fields is None:
            fields = time_fields[problems] = "".join((
                "true" if "stale" in problems else "false", _JOIN_IDLE,
                "true" if "idle_with_work_waiting" in problems else "false", _JOIN_PROBLEMS,
                orjson.dumps(list(problems)).decode(), _JOIN_QUARANTINE))
        quarantine = quarantines.get(machine_id) if quarantines else None
        out += (head, age_text, middle, fields,
                "null" if quarantine is None else orjson.dumps(quarantine.as_json()).decode(),
                tail, ",")
        shown.append(problems)
    out[-1] = "]"
    return ViewsAnswer(("[" + "".join(out)).encode(), shown)
