"""What is wrong with a machine: the problem rules, pure functions of plain values.

A machine's recent ended runs reach the rules as its `outcomes`: one character per
run, newest first (see `records.outcome_code`), kept up to date by the store at write time
so that no request has to read a machine's whole history. Once its runs have labels, their
`attributions` come beside them, one character each (history.ATTRIBUTIONS), judged by the
store against the runs of the same label on other machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Callable, Collection, Container, NamedTuple, Sequence

from .config import SLOW_MIN_RUNS, WINDOW, Config
from .identifiers import queue_id
from .records import COMPLETED, EXCEPTION, FAILED, LOST, LOST_REASON, NOT_COUNTED, MachineRecord
from .times import epoch_microseconds

# str.translate tables (C speed: /machines judges every machine per request)
_COUNTED_ONLY = str.maketrans("", "", NOT_COUNTED)
_COMPLETED_OR_FAILED_ONLY = str.maketrans("", "", EXCEPTION + LOST + NOT_COUNTED)
SUCCESS_RATE_MIN_RUNS = 5
# An attribution character (history.ATTRIBUTIONS): the failure travels with the task, or it
# passes on other machines.
TASK_ATTRIBUTED, MACHINE_ATTRIBUTED = "T", "M"
# A machine seen at most this many seconds ago was seen within the hour (/summary's seen_within_1h).
SEEN_WITHIN_SECONDS = 3600


class MachineFacts(NamedTuple):
    """What the rules look at for one machine (all from its stored record)."""

    age_seconds: float | None
    queue: str | None = None  # `<provisioner>/<workerType>`
    outcomes: str = ""  # ended runs, newest first, one `records.outcome_code` each
    newest_state: str | None = None  # the newest run's state ...
    newest_reason: str | None = None  # ... its reasonResolved ...
    newest_time: str | None = None  # ... and its time (started while it runs), naive UTC
    seen: bool = True  # False for a machine of the inventory never seen since tracking began
    in_inventory: bool | None = None  # None when no inventory is loaded
    attributions: str = ""  # one per outcome, "" when no run has been attributed
    # duration over the peers' median of the newest WINDOW completed runs that have one
    peer_ratios: Sequence[float] = ()


# Config declares each threshold's default once; the rules' defaults are its.
_DEFAULTS = Config()


@dataclass(frozen=True)
class Thresholds:
    """The tunable limits of the rules, in seconds and counts."""

    stale_after: float = _DEFAULTS.stale_after
    failure_streak: int = _DEFAULTS.failure_streak
    success_rate_min: float = _DEFAULTS.success_rate_min
    exceptions_max: int = _DEFAULTS.exceptions_max
    hung_after: float = _DEFAULTS.hung_after
    slow_factor: float = _DEFAULTS.slow_factor

    @classmethod
    def from_config(cls, config: Config, stale_after: float | None = None) -> "Thresholds":
        """The configured thresholds; `stale_after` overrides STALE_AFTER (a per-request value)."""
        return cls(
            stale_after=config.stale_after if stale_after is None else stale_after,
            failure_streak=config.failure_streak,
            success_rate_min=config.success_rate_min,
            exceptions_max=config.exceptions_max,
            hung_after=config.hung_after,
            slow_factor=config.slow_factor,
        )


class Cutoffs(NamedTuple):
    """The time rules at a moment as instants, in epoch microseconds: what the machine index
    counts between (lua/fleet_figures.lua is given them), from the thresholds is_stale,
    is_seen_within_the_hour and has_hung_task judge a machine's age by."""

    stale: int  # seen at or before it: stale
    seen_within: int  # seen at or after it: seen within the hour
    hung: int  # running since before it: hung

    @classmethod
    def at(cls, now: datetime, limits: Thresholds) -> "Cutoffs":
        """The cutoffs of a request at `now`."""
        at = epoch_microseconds(now)
        return cls(at - round(limits.stale_after * 1_000_000), at - SEEN_WITHIN_SECONDS * 1_000_000,
                   at - round(limits.hung_after * 1_000_000))


def is_stale(facts: MachineFacts, now: datetime, limits: Thresholds, busy: Container[str]) -> bool:
    """Not seen for STALE_AFTER."""
    return facts.age_seconds is not None and facts.age_seconds >= limits.stale_after


def is_seen_within_the_hour(age_seconds: float | None) -> bool:
    """Seen at most SEEN_WITHIN_SECONDS ago: /summary's seen_within_1h (no problem)."""
    return age_seconds is not None and age_seconds <= SEEN_WITHIN_SECONDS


def is_idle_with_work_waiting(facts: MachineFacts, now: datetime, limits: Thresholds,
                              busy: Container[str]) -> bool:
    """Stale while its worker type has tasks waiting: the machines to look at first."""
    return is_stale(facts, now, limits, busy) and facts.queue in busy


def _newest_counted(outcomes: str, count: int) -> str:
    newest = outcomes[:count]
    return newest if NOT_COUNTED not in newest else outcomes.translate(_COUNTED_ONLY)[:count]


def has_consecutive_failures(facts: MachineFacts, now: datetime, limits: Thresholds,
                             busy: Container[str]) -> bool:
    """The newest FAILURE_STREAK counted runs all ended failed or exception."""
    newest = _newest_counted(facts.outcomes, limits.failure_streak)
    return len(newest) == limits.failure_streak and COMPLETED not in newest


def has_low_success_rate(facts: MachineFacts, now: datetime, limits: Thresholds,
                         busy: Container[str]) -> bool:
    """Under SUCCESS_RATE_MIN completed over the newest WINDOW completed or failed runs
    (SUCCESS_RATE_MIN_RUNS at least)."""
    if FAILED not in facts.outcomes:
        return False
    judged = facts.outcomes.translate(_COMPLETED_OR_FAILED_ONLY)[:WINDOW]
    return (len(judged) >= SUCCESS_RATE_MIN_RUNS
            and judged.count(COMPLETED) / len(judged) < limits.success_rate_min)


def has_exceptions(facts: MachineFacts, now: datetime, limits: Thresholds,
                   busy: Container[str]) -> bool:
    """At least EXCEPTIONS_MAX exceptions among the newest WINDOW counted runs."""
    if EXCEPTION not in facts.outcomes and LOST not in facts.outcomes:
        return False
    window = _newest_counted(facts.outcomes, WINDOW)
    return window.count(EXCEPTION) + window.count(LOST) >= limits.exceptions_max


def is_lost_mid_task(facts: MachineFacts, now: datetime, limits: Thresholds,
                     busy: Container[str]) -> bool:
    """The newest run ended claim-expired: the worker stopped reclaiming it."""
    return facts.newest_state == "exception" and facts.newest_reason == LOST_REASON


def has_hung_task(facts: MachineFacts, now: datetime, limits: Thresholds,
                  busy: Container[str]) -> bool:
    """The newest run has been running longer than HUNG_AFTER."""
    if facts.newest_state != "running" or not facts.newest_time:
        return False
    try:
        started = datetime.fromisoformat(facts.newest_time)
    except ValueError:
        return False
    return (now - started).total_seconds() > limits.hung_after


def fails_where_others_pass(facts: MachineFacts, now: datetime, limits: Thresholds,
                            busy: Container[str]) -> bool:
    """At least FAILURE_STREAK of the newest WINDOW counted runs failed where the task passed on
    another machine (attributed "machine")."""
    if MACHINE_ATTRIBUTED not in facts.attributions:
        return False
    counted = [attribution for code, attribution in zip(facts.outcomes, facts.attributions, strict=False)
               if code != NOT_COUNTED][:WINDOW]
    return counted.count(MACHINE_ATTRIBUTED) >= limits.failure_streak


def is_slow(facts: MachineFacts, now: datetime, limits: Thresholds, busy: Container[str]) -> bool:
    """At least SLOW_MIN_RUNS of the newest WINDOW completed runs have a peer ratio, and their
    median is at least SLOW_FACTOR."""
    ratios = facts.peer_ratios
    return len(ratios) >= SLOW_MIN_RUNS and median(ratios) >= limits.slow_factor


def without_task_failures(facts: MachineFacts) -> MachineFacts:
    """The facts with the runs attributed "task" not counted: every rule skips them."""
    if TASK_ATTRIBUTED not in facts.attributions:
        return facts
    outcomes = "".join(NOT_COUNTED if attribution == TASK_ATTRIBUTED else code
                       for code, attribution in zip(facts.outcomes, facts.attributions, strict=False))
    return facts._replace(outcomes=outcomes)


def is_never_seen(facts: MachineFacts, now: datetime, limits: Thresholds,
                  busy: Container[str]) -> bool:
    """In the inventory, and not seen since tracking began: dead, or never set up."""
    return not facts.seen


def is_not_in_inventory(facts: MachineFacts, now: datetime, limits: Thresholds,
                        busy: Container[str]) -> bool:
    """Seen, while the loaded inventory does not list it: new, renamed, or a typo in the inventory."""
    return facts.seen and facts.in_inventory is False


Rule = Callable[[MachineFacts, datetime, Thresholds, Container[str]], bool]
# Every problem code the API knows, with its rule; a new problem is one more entry.
RULES: dict[str, Rule] = {
    "consecutive_failures": has_consecutive_failures,
    "exceptions": has_exceptions,
    "fails_where_others_pass": fails_where_others_pass,
    "hung_task": has_hung_task,
    "idle_with_work_waiting": is_idle_with_work_waiting,
    "lost_mid_task": is_lost_mid_task,
    "low_success_rate": has_low_success_rate,
    "never_seen": is_never_seen,
    "not_in_inventory": is_not_in_inventory,
    "slow": is_slow,
    "stale": is_stale,
}
PROBLEMS = tuple(sorted(RULES))
_RULES_IN_ORDER = tuple((code, RULES[code]) for code in PROBLEMS)
# The rules that read the time of the request or the work waiting, and those that read the
# inventory; every other rule reads the machine's record alone, so its answer changes only
# when the record does (the store's machine index keeps it: `record_problems`).
TIME_PROBLEMS = frozenset({"stale", "idle_with_work_waiting", "hung_task"})
INVENTORY_PROBLEMS = frozenset({"never_seen", "not_in_inventory"})
RECORD_PROBLEMS = tuple(code for code in PROBLEMS
                        if code not in TIME_PROBLEMS | INVENTORY_PROBLEMS)
_RECORD_RULES = tuple((code, RULES[code]) for code in RECORD_PROBLEMS)
# A machine missing from the inventory works; the inventory needs updating, not the machine.
BOOKKEEPING_PROBLEMS = frozenset({"not_in_inventory"})


def machine_problems(facts: MachineFacts, now: datetime, limits: Thresholds,
                     busy: Container[str] = ()) -> list[str]:
    """The sorted codes of every problem the machine has; empty when all is well."""
    facts = without_task_failures(facts)
    return [code for code, rule in _RULES_IN_ORDER if rule(facts, now, limits, busy)]


def record_problems(facts: MachineFacts, limits: Thresholds) -> list[str]:
    """The sorted codes of the problems of RECORD_PROBLEMS the machine has: what its record
    alone says, whatever the time, the work waiting and the inventory."""
    facts = without_task_failures(facts)
    # these rules read neither the time nor the work waiting: any value would do
    return [code for code, rule in _RECORD_RULES if rule(facts, _ANY_TIME, limits, ())]


_ANY_TIME = datetime(2000, 1, 1)


def calls_for_attention(problems: Collection[str]) -> bool:
    """Whether problems call for someone on duty: any, unless they are all bookkeeping."""
    return bool(problems) and not BOOKKEEPING_PROBLEMS.issuperset(problems)


def facts_of(record: MachineRecord, age: float | None, in_inventory: bool | None) -> MachineFacts:
    """What the rules look at in a stored record (its age and inventory entry computed apart)."""
    get = record.details.get
    return MachineFacts(age, queue_id(get('provisioner'), get('worker_type')), get("outcomes", ""),
                        get("state"), get("reason_resolved"), get("task_time"),
                        record.lastseen is not None, in_inventory, get("attributions", ""),
                        get("peer_ratios", ()))
