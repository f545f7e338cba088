"""Each machine's history of changes, the pure part: the events, their identity and encoding,
and the rules that derive them from plain values. No I/O, no Redis, no clock: every instant is
a parameter, so a redelivered message derives the same events with the same ids.

An event is one change of a machine's state (LUCI Swarming's bot events, LAVA's health
transitions): when it happened in the world (`time`, the lastseen format), what it is (`kind`),
the machine (`machine`, `<dc>:<host>`) and, when a run caused it, that run as evidence
(`task_id`, `run_id`, `label`, `url`).

Problems of the record (problems.RECORD_PROBLEMS) are a function of the machine's runs:
`run_problem_events` replays them oldest to newest, so any delivery order of the same runs gives
the same events. Problems of time are instants computed from the record (`stale_since`,
`hung_since`, `idle_with_work_waiting_since`); quarantines come from two states or from
Taskcluster's `quarantineDetails`; `retained` is the retention rule.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Sequence, TypedDict

import orjson

from .config import WINDOW
from .identifiers import is_identifier, split_machine_id, task_url
from .problems import MACHINE_ATTRIBUTED, PROBLEMS, TASK_ATTRIBUTED, MachineFacts, Thresholds, record_problems
from .records import COMPLETED, RUNNING, Run, outcome_code
from .times import LASTSEEN_FORMAT, LASTSEEN_LENGTH, format_lastseen, parse_time

# -- kinds ---------------------------------------------------------------------------

FIRST_SEEN = "first_seen"
PROBLEM_STARTED = "problem_started"
PROBLEM_ENDED = "problem_ended"
QUARANTINED = "quarantined"
QUARANTINE_CHANGED = "quarantine_changed"
QUARANTINE_ENDED = "quarantine_ended"
INVENTORY_ADDED = "inventory_added"
INVENTORY_REMOVED = "inventory_removed"
BACKFILLED = "backfilled"
SEEN_AGAIN = "seen_again"
EVENT_KINDS = (FIRST_SEEN, PROBLEM_STARTED, PROBLEM_ENDED, QUARANTINED, QUARANTINE_CHANGED,
               QUARANTINE_ENDED, INVENTORY_ADDED, INVENTORY_REMOVED, BACKFILLED, SEEN_AGAIN)
# How a quarantine ended: someone set its quarantineUntil to the past, or its time ran out.
LIFTED, EXPIRED = "lifted", "expired"
QUARANTINE_ENDINGS = (LIFTED, EXPIRED)
# A problem_ended's reason when late peer evidence put the failures down to the task.
REATTRIBUTED = "re-attributed"

# Retention defaults: how long a machine's events are kept, and how many at most.
EVENT_RETENTION_SECONDS = 90 * 86400
EVENT_MAX = 500
# Hex digits of SHA-1 in an event id: 64 bits, unlikely to collide among one machine's events.
EVENT_ID_LENGTH = 16
# An entry of the history written before labels has no attribution: what the store counts it as.
_NO_ATTRIBUTED = "N"
_ATTRIBUTION_CODES = {"machine": MACHINE_ATTRIBUTED, "task": TASK_ATTRIBUTED}


class EventBase(TypedDict):
    """What every event has."""

    time: str  # when it happened in the world, the lastseen format
    kind: str  # one of EVENT_KINDS
    machine: str  # `<dc>:<host>`


class Event(EventBase, total=False):
    """One change of a machine's state, as stored and served (JSON); the kind says which
    optional fields it has (`decode_event` checks them)."""

    problem: str  # problem_started, problem_ended: a code of problems.PROBLEMS
    reason: str | None  # quarantined, quarantine_changed: quarantineInfo; problem_ended: REATTRIBUTED
    until: str  # quarantined, quarantine_changed: the lastseen format
    by: str | None  # quarantined, quarantine_changed, quarantine_ended (lifted): the clientId
    how: str  # quarantine_ended: LIFTED or EXPIRED
    lastseen: str  # backfilled: the lastseen Taskcluster reported
    after_seconds: float  # seen_again: how long the machine had not been seen
    # the run that caused it, when one did
    task_id: str
    run_id: int
    label: str | None
    url: str
    peers: int  # problem_started of fails_where_others_pass: other machines that passed the label


def event_id(event: Mapping[str, Any]) -> str:
    """A deterministic identity of an event: the same change derived twice gets the same id."""
    # what tells two changes of one machine apart; the rest (label, url, until...) describes one
    parts = (event.get("machine"), event.get("kind"), event.get("problem"), event.get("time"),
             event.get("task_id"), event.get("run_id"), event.get("by"), event.get("how"))
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return hashlib.sha1(text.encode()).hexdigest()[:EVENT_ID_LENGTH]


def encode_event(event: Mapping[str, Any]) -> bytes:
    """An event as compact JSON with sorted keys: equal events store equal bytes."""
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


# -- validation ----------------------------------------------------------------------

def _is_lastseen(value: object) -> bool:
    if not isinstance(value, str) or len(value) != LASTSEEN_LENGTH:
        return False
    try:
        datetime.strptime(value, LASTSEEN_FORMAT)
    except ValueError:
        return False
    return True


def _is_machine_id(value: object) -> bool:
    if not isinstance(value, str):
        return False
    datacenter, hostname = split_machine_id(value)
    return is_identifier(datacenter) and is_identifier(hostname)


def _is_int(value: object) -> bool:
    # JSON's true is no count (bool is an int to Python)
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _is_optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_problem(value: object) -> bool:
    return isinstance(value, str) and value in PROBLEMS


# kind -> (field, check) every event of the kind has
_QUARANTINE_FIELDS = (("until", _is_lastseen), ("reason", _is_optional_str), ("by", _is_optional_str))
_REQUIRED: dict[str, tuple[tuple[str, Any], ...]] = {
    FIRST_SEEN: (),
    PROBLEM_STARTED: (("problem", _is_problem),),
    PROBLEM_ENDED: (("problem", _is_problem),),
    QUARANTINED: _QUARANTINE_FIELDS,
    QUARANTINE_CHANGED: _QUARANTINE_FIELDS,
    QUARANTINE_ENDED: (("how", lambda value: value in QUARANTINE_ENDINGS),),
    INVENTORY_ADDED: (),
    INVENTORY_REMOVED: (),
    BACKFILLED: (("lastseen", _is_lastseen),),
    SEEN_AGAIN: (("after_seconds", lambda value: _is_number(value) and value >= 0),),
}
# fields any kind may carry, checked when present
_OPTIONAL: dict[str, Any] = {
    "task_id": is_identifier,
    "run_id": lambda value: _is_int(value) and value >= 0,
    "label": _is_optional_str,
    "url": lambda value: isinstance(value, str),
    "peers": lambda value: _is_int(value) and value >= 0,
    "reason": _is_optional_str,
    "by": _is_optional_str,
}


def _decode(raw: bytes | str) -> Event | str:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(document, dict):
        return "not a JSON object"
    kind = document.get("kind")
    if kind not in _REQUIRED:
        return f"unknown kind {str(kind)[:40]!r}"
    if not _is_lastseen(document.get("time")):
        return "time is not in the lastseen format"
    if not _is_machine_id(document.get("machine")):
        return "machine is not a <dc>:<host> id"
    for name, check in _REQUIRED[kind]:
        if name not in document:
            return f"{kind} without {name}"
        if not check(document[name]):
            return f"{kind} with a bad {name}"
    for name, check in _OPTIONAL.items():
        if name in document and not check(document[name]):
            return f"{kind} with a bad {name}"
    # fields this release does not know are kept: a newer release may have written them
    return document  # type: ignore[return-value]


def decode_event(raw: bytes | str) -> Event | None:
    """The event stored as `raw`, validated; None when corrupt (`event_corruption` says why)."""
    decoded = _decode(raw)
    return None if isinstance(decoded, str) else decoded


def event_corruption(raw: bytes | str) -> str | None:
    """Why `raw` is no valid event (a short reason for logs and counters); None when it is one."""
    decoded = _decode(raw)
    return decoded if isinstance(decoded, str) else None


# -- simple kinds --------------------------------------------------------------------

def _moment(value: datetime | str) -> datetime:
    return parse_time(value) if isinstance(value, str) else value


def _event(machine_id: str, kind: str, time: datetime | str) -> Event:
    return {"time": format_lastseen(_moment(time)), "kind": kind, "machine": machine_id}


def first_seen(machine_id: str, time: datetime | str) -> Event:
    """The machine was seen for the first time."""
    return _event(machine_id, FIRST_SEEN, time)


def inventory_event(machine_id: str, added: bool, time: datetime | str) -> Event:
    """The machine was added to, or removed from, the loaded inventory at `time`."""
    return _event(machine_id, INVENTORY_ADDED if added else INVENTORY_REMOVED, time)


def backfilled(machine_id: str, time: datetime | str, lastseen: datetime | str) -> Event:
    """A backfill from Taskcluster's worker list wrote the machine's record at `time`."""
    event = _event(machine_id, BACKFILLED, time)
    event["lastseen"] = format_lastseen(_moment(lastseen))
    return event


# -- problems judged from runs -------------------------------------------------------

class _Entry(NamedTuple):
    """A run as the store's history held it at some moment: running, or ended."""

    sort_key: tuple[datetime, bool, str, int]
    run: Run
    ended: bool


class _Timed(NamedTuple):
    """A run with its times parsed once (the replay reads them at every moment)."""

    run: Run
    started: datetime | None
    resolved: datetime | None  # None while it runs


def _timed(run: Run) -> _Timed:
    return _Timed(run, parse_time(run.started) if run.started else None,
                  parse_time(run.resolved) if run.state != RUNNING and run.resolved else None)


def _one_per_run(runs: Iterable[Run]) -> list[_Timed]:
    # the store keeps one entry per run: its resolution replaces its start, a redelivery itself
    chosen: dict[tuple[str, int], tuple[tuple[bool, datetime, str, str], _Timed]] = {}
    for run in runs:
        timed = _timed(run)
        moment = timed.resolved or timed.started
        if moment is None:
            continue  # a run with no known time has no place in the replay
        rank = (timed.resolved is not None, moment, run.state, run.reason_resolved or "")
        key = (run.task_id, run.run_id)
        if key not in chosen or rank > chosen[key][0]:
            chosen[key] = (rank, timed)
    return [timed for _, timed in chosen.values()]


def _entries_at(runs: Sequence[_Timed], moment: tuple[datetime, bool, str, int]) -> list[_Entry]:
    """The history as the store held it once everything up to `moment` had arrived, newest first."""
    entries = []
    for run, started, resolved in runs:
        if resolved is not None and (resolved, True, run.task_id, run.run_id) <= moment:
            entries.append(_Entry((resolved, True, run.task_id, run.run_id), run, True))
        elif started is not None and (started, False, run.task_id, run.run_id) <= moment:
            entries.append(_Entry((started, False, run.task_id, run.run_id), run, False))
    # the store's order: time, then a resolution after a start, then task and run
    entries.sort(key=lambda entry: entry.sort_key, reverse=True)
    return entries


def _ratio(run: Run) -> float | None:
    duration = run.duration_seconds
    if duration is None and run.started and run.resolved:
        duration = (parse_time(run.resolved) - parse_time(run.started)).total_seconds()
    if not run.peer_median_seconds or duration is None:
        return None
    # rounded as batch_outcomes.lua rounds it (half up, three decimals)
    return math.floor(duration / run.peer_median_seconds * 1000 + 0.5) / 1000


def _facts_at(entries: Sequence[_Entry]) -> MachineFacts:
    """What the record rules would read in a history of these entries, newest first (the rule
    of store/lua/batch_outcomes.lua)."""
    outcomes, attributions, ratios, completed = [], [], [], 0
    for entry in entries:
        if not entry.ended:
            continue
        run = entry.run
        code = outcome_code(run.state, run.reason_resolved)
        outcomes.append(code)
        attributions.append(_ATTRIBUTION_CODES.get(run.attribution or "", _NO_ATTRIBUTED))
        if code == COMPLETED and completed < WINDOW:
            completed += 1
            ratio = _ratio(run)
            if ratio is not None:
                ratios.append(ratio)
    newest = entries[0] if entries else None
    newest_run = newest.run if newest else None
    attributed = any(code != _NO_ATTRIBUTED for code in attributions)
    return MachineFacts(
        None, None, "".join(outcomes),
        None if newest_run is None else (newest_run.state if newest and newest.ended else RUNNING),
        newest_run.reason_resolved if newest and newest.ended and newest_run else None,
        format_lastseen(newest.sort_key[0]) if newest else None,
        attributions="".join(attributions) if attributed else "", peer_ratios=tuple(ratios))


def _evidence(event: Event, run: Run, root_url: str) -> Event:
    event["task_id"] = run.task_id
    event["run_id"] = run.run_id
    event["label"] = run.label
    event["url"] = task_url(root_url, run.task_id, run.run_id)
    return event


def problem_event(machine_id: str, started: bool, problem: str, time: datetime | str,
                  run: Run | None = None, root_url: str = "") -> Event:
    """A problem_started or problem_ended at `time`, with `run` as its evidence when given."""
    event = _event(machine_id, PROBLEM_STARTED if started else PROBLEM_ENDED, time)
    event["problem"] = problem
    if run is not None:
        _evidence(event, run, root_url)
        if started and problem == "fails_where_others_pass" and run.peers \
                and _is_int(run.peers.get("completed")):
            event["peers"] = run.peers["completed"]
    return event


def run_problem_events(machine_id: str, runs: Iterable[Run], limits: Thresholds,
                       root_url: str) -> list[Event]:
    """The record problems (problems.RECORD_PROBLEMS) starting and ending over the machine's
    runs, oldest first; the same for any order and any duplicates of the same runs.

    The runs are replayed as the store would have received them in order: at each run's start
    and at its resolution, the history holds every run up to that instant (a resolution
    replacing its start), and the rules judge it. A problem starts or ends at the instant of
    the run that changed it, which is its evidence. The attributions are the runs' current ones:
    a problem that late peer evidence dissolved is ended by `reattributed_ends`.
    """
    unique = _one_per_run(runs)
    moments: list[tuple[tuple[datetime, bool, str, int], Run]] = []
    for run, started, resolved in unique:
        if started is not None:
            moments.append(((started, False, run.task_id, run.run_id), run))
        if resolved is not None:
            moments.append(((resolved, True, run.task_id, run.run_id), run))
    moments.sort(key=lambda pair: pair[0])
    events: list[Event] = []
    open_now: list[str] = []
    for moment, run in moments:
        judged = record_problems(_facts_at(_entries_at(unique, moment)), limits)
        for code in judged:
            if code not in open_now:
                events.append(problem_event(machine_id, True, code, moment[0], run, root_url))
        for code in open_now:
            if code not in judged:
                events.append(problem_event(machine_id, False, code, moment[0], run, root_url))
        open_now = judged
    return events


def problems_since(events: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The problems open after these events (any order): code -> when it started."""
    open_since: dict[str, str] = {}
    # stable: events of one instant apply in the order given
    for event in sorted(events, key=lambda event: str(event.get("time"))):
        code = event.get("problem")
        if not isinstance(code, str):
            continue
        if event.get("kind") == PROBLEM_STARTED:
            open_since.setdefault(code, str(event["time"]))
        elif event.get("kind") == PROBLEM_ENDED:
            open_since.pop(code, None)
    return open_since


def reattributed_ends(machine_id: str, open_before: Mapping[str, str], open_now: Mapping[str, str],
                      evidence_time: datetime | str) -> list[Event]:
    """problem_ended, reason REATTRIBUTED, at `evidence_time` for each problem open on the runs
    as attributed before (`open_before`) and not on the runs as attributed now (`open_now`).

    The replay of the runs as attributed now never shows such a problem, so without this end
    its stored start would stay open. `evidence_time` is when the peer evidence happened in the
    world (the peer run's resolution), not the clock, so a redelivery ends it with the same id.
    A problem that the new attributions open is no special case: the replay starts it at its run.
    """
    events = []
    for code in sorted(open_before):
        if code not in open_now:
            event = problem_event(machine_id, False, code, evidence_time)
            event["reason"] = REATTRIBUTED
            events.append(event)
    return events


# -- problems of time ----------------------------------------------------------------

def _plus(time: datetime | str, seconds: float) -> str:
    return format_lastseen(_moment(time) + timedelta(seconds=seconds))


def stale_since(lastseen: datetime | str, limits: Thresholds) -> str:
    """When a machine last seen at `lastseen` became stale: STALE_AFTER later."""
    return _plus(lastseen, limits.stale_after)


def hung_since(run_started: datetime | str, limits: Thresholds) -> str:
    """When a run started at `run_started` and still running turns hung: HUNG_AFTER later
    (has_hung_task holds strictly after this instant, is_stale from its own)."""
    return _plus(run_started, limits.hung_after)


def idle_with_work_waiting_since(lastseen: datetime | str, work_waiting_since: datetime | str,
                                 limits: Thresholds) -> str:
    """When a machine became idle with work waiting: stale, and its worker type's work waiting."""
    return max(stale_since(lastseen, limits), format_lastseen(_moment(work_waiting_since)))


def seen_again(machine_id: str, previous_lastseen: datetime | str, new_time: datetime | str,
               limits: Thresholds) -> Event | None:
    """A seen_again at `new_time` when the machine had been stale since `previous_lastseen`."""
    gap = (_moment(new_time) - _moment(previous_lastseen)).total_seconds()
    if gap < limits.stale_after:
        return None
    event = _event(machine_id, SEEN_AGAIN, new_time)
    event["after_seconds"] = gap
    return event


# -- quarantines ---------------------------------------------------------------------

class QuarantineState(NamedTuple):
    """A machine's quarantine as read at one time (naive UTC); an `until` at or before
    `updated_at` is a lift, not a quarantine."""

    until: datetime
    reason: str | None = None
    by: str | None = None
    updated_at: datetime | None = None


def _quarantine_event(machine_id: str, kind: str, time: datetime, state: QuarantineState) -> Event:
    event = _event(machine_id, kind, time)
    event["until"] = format_lastseen(state.until)
    event["reason"] = state.reason
    event["by"] = state.by
    return event


def _ended(machine_id: str, time: datetime, how: str, by: str | None) -> Event:
    event = _event(machine_id, QUARANTINE_ENDED, time)
    event["how"] = how
    if how == LIFTED and by is not None:
        event["by"] = by
    return event


def _in_force(state: QuarantineState | None) -> bool:
    return state is not None and (state.updated_at is None or state.until > state.updated_at)


def quarantine_events(machine_id: str, before: QuarantineState | None, after: QuarantineState | None,
                      now: datetime, how: Literal["lifted", "expired"] | None = None) -> list[Event]:
    """The quarantine events between two states of a machine, oldest first: `before` as last
    known, `after` as read at `now`; None is no quarantine.

    A changed state happened at its `updated_at` (else at `now`). A quarantine whose time ran
    out before the change (or by `now`) expired at its `until`; one that ended earlier was
    lifted, unless `how` says otherwise (the caller knows: it lifted it, or only saw it gone).
    """
    changed = after is not None and after != before
    at = after.updated_at if after is not None and changed and after.updated_at is not None else now
    events: list[Event] = []
    was = _in_force(before)
    if was and before is not None and before.until <= at and how != LIFTED:
        # it ran out first: the end is when that happened, whatever came after
        events.append(_ended(machine_id, before.until, EXPIRED, None))
        was = False
    is_now = after is not None and _in_force(after) and after.until > at
    if was and not is_now:
        by = after.by if after is not None and changed else None
        events.append(_ended(machine_id, at, how or LIFTED, by))
    elif is_now and after is not None:
        if not was:
            events.append(_quarantine_event(machine_id, QUARANTINED, at, after))
        elif before is not None and before[:3] != after[:3]:
            events.append(_quarantine_event(machine_id, QUARANTINE_CHANGED, at, after))
        if after.until <= now:
            # a change read late, whose own time has run out since
            events.append(_ended(machine_id, after.until, EXPIRED, None))
    return events


def _detail_state(detail: Mapping[str, Any]) -> QuarantineState | None:
    try:
        updated_at = parse_time(detail["updatedAt"])
        until = parse_time(detail["quarantineUntil"])
    except (KeyError, TypeError, ValueError):
        return None  # an entry Taskcluster's schema does not allow says nothing reliable
    reason, by = detail.get("quarantineInfo"), detail.get("clientId")
    return QuarantineState(until, reason if isinstance(reason, str) and reason else None,
                           by if isinstance(by, str) and by else None, updated_at)


def quarantine_detail_events(machine_id: str, details: Sequence[Mapping[str, Any]],
                             now: datetime | None = None) -> list[Event]:
    """A worker's `quarantineDetails` (Taskcluster's worker-manager) as events, oldest first:
    each entry is a change at its `updatedAt` by its `clientId`; a `quarantineUntil` at or
    before its `updatedAt` lifted the quarantine. Entries repeated (same updatedAt and clientId)
    count once; entries without valid times are skipped. Given `now`, a last quarantine whose
    time ran out by then ends expired."""
    states: dict[tuple[datetime, str], QuarantineState] = {}
    for detail in details:
        state = _detail_state(detail)
        if state is not None and state.updated_at is not None:
            states.setdefault((state.updated_at, state.by or ""), state)
    events: list[Event] = []
    current: QuarantineState | None = None
    for key in sorted(states):
        state = states[key]
        events.extend(quarantine_events(machine_id, current, state, key[0]))
        current = state if _in_force(state) else None
    if now is not None and current is not None and current.until <= now:
        events.append(_ended(machine_id, current.until, EXPIRED, None))
    return events


# -- retention -----------------------------------------------------------------------

def retained(events_newest_first: Iterable[Event], now: datetime,
             retention_seconds: float = EVENT_RETENTION_SECONDS, max_per_machine: int = EVENT_MAX
             ) -> list[Event]:
    """The events of one machine to keep at `now`: younger than the retention, the newest
    `max_per_machine` of them; a retention or a maximum of 0 keeps none."""
    if retention_seconds <= 0 or max_per_machine <= 0:
        return []
    cutoff = format_lastseen(now - timedelta(seconds=retention_seconds))
    # the lastseen format sorts as its instants do; stable, so one instant keeps its order
    newest_first = sorted(events_newest_first, key=lambda event: event["time"], reverse=True)
    return [event for event in newest_first if event["time"] > cutoff][:max_per_machine]
