"""Pure views of the fleet: a machine as JSON, filters, sorting, the summary, the listener's health.

Nothing here reads Redis or the clock: `reads` reads, then calls these with `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import (Any, Callable, Container, Iterable, Iterator, Mapping, NamedTuple, Sequence,
                    TypeVar, cast)

import orjson

from .fields import (CSV_FIELDS, FIELD, LASTSEEN_FIELDS, MACHINE_FIELDS, STATES, CountedMachine,
                     Machine, Tier, tier_of)
from ..core.identifiers import MACHINE_ID_SEPARATOR, queue_id, split_machine_id, task_url
from ..core.params import BadParameter, choice_param, duration_param, identifier_param
from ..core.problems import PROBLEMS, Thresholds, facts_of, is_seen_within_the_hour, machine_problems
from ..core.records import MachineRecord, Quarantine, Run
from ..core.times import LASTSEEN_LENGTH, format_lastseen, parse_time

SORT_KEYS = ("lastseen", "-lastseen", "machine", "-machine")
# A machine as machine_json or counted_json builds it.
M = TypeVar("M", bound=Mapping[str, Any])
# `problem=any` selects the machines with at least one problem.
ANY_PROBLEM = "any"
PROBLEM_FILTERS = (ANY_PROBLEM, *PROBLEMS)
# The /machines query parameters that select and order machines (the page takes the same).
MACHINE_FILTERS = ("datacenter", "worker_type", "provisioner", "state", "stale", "seen_within",
                   "problem", "quarantined", "sort", "include")
# `quarantined=true|false`: only the machines quarantined in Taskcluster now, or only the others.
BOOLEANS = ("true", "false")
# What /machines adds to the machines seen when asked: `never_seen` is the inventory's
# machines that have not been seen since tracking began.
INCLUDES = ("never_seen",)
# The counts of /summary, per group and in its totals (beside `problems`).
SUMMARY_COUNTS = ("total", "expected", "never_seen", "seen_within_1h", "stale", "last_task_exception",
                  "idle_with_work_waiting", "quarantined")
# A Taskcluster poll older than this many polls is a warning in /__heartbeat__: the quarantines
# shown may be out of date.
TASKCLUSTER_POLLS_LATE = 3


@dataclass(frozen=True)
class MachineQuery:
    """The filters and order of a /machines request."""

    datacenter: str | None = None
    worker_type: str | None = None
    provisioner: str | None = None
    state: str | None = None
    stale: float | None = None
    seen_within: float | None = None
    problem: str | None = None
    quarantined: bool | None = None
    sort: str = "machine"
    include_never_seen: bool = False

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "MachineQuery":
        """Validate query parameters; BadParameter names the first bad one."""
        values: dict[str, Any] = {}
        for name in ("datacenter", "worker_type", "provisioner"):
            if name in args:
                values[name] = identifier_param(name, args[name])
        if "state" in args:
            values["state"] = choice_param("state", args["state"], STATES)
        for name in ("stale", "seen_within"):
            if name in args:
                values[name] = duration_param(name, args[name])
        if "problem" in args:
            values["problem"] = choice_param("problem", args["problem"], PROBLEM_FILTERS)
        if "quarantined" in args:
            values["quarantined"] = choice_param("quarantined", args["quarantined"], BOOLEANS) == "true"
        if "sort" in args:
            values["sort"] = choice_param("sort", args["sort"], SORT_KEYS)
        if "include" in args:
            values["include_never_seen"] = choice_param("include", args["include"], INCLUDES) == "never_seen"
        if values.get("problem") in (ANY_PROBLEM, "never_seen"):
            values["include_never_seen"] = True  # asking for them, or for every problem, includes them
        return cls(**values)

    @property
    def filtered(self) -> bool:
        """Whether the query leaves some machines out."""
        return any(value is not None for value in (
            self.datacenter, self.worker_type, self.provisioner, self.state, self.stale,
            self.seen_within, self.problem, self.quarantined))


def _in_lastseen_format(lastseen: str) -> bool:
    return len(lastseen) == LASTSEEN_LENGTH


def lastseen_and_age(lastseen: str | None, now: datetime) -> tuple[str | None, float | None]:
    """A stored lastseen as served (the one format) and its age at `now` in seconds (None when
    never seen or unreadable)."""
    if lastseen is None:  # an inventory machine never seen
        return None, None
    if _in_lastseen_format(lastseen):  # the C parser suffices
        try:
            return lastseen, round((now - datetime.fromisoformat(lastseen)).total_seconds(), 3)
        except (ValueError, TypeError):
            pass
    try:  # written by hand or by an old tool: serve the one format
        moment = parse_time(lastseen)
    except ValueError:
        return lastseen, None
    return format_lastseen(moment), round((now - moment).total_seconds(), 3)


def machine_json(record: MachineRecord, now: datetime, root_url: str,
                 busy_queues: Container[str] = (), limits: Thresholds = Thresholds(), *,
                 in_inventory: bool | None = None, quarantine: Quarantine | None = None) -> Machine:
    """One machine as the API shows it; `in_inventory` is None when no inventory is loaded,
    `quarantine` its quarantine lasting past `now` (Store.quarantines(now)), None when none.

    A record without a lastseen is an inventory machine never seen. Its keys are those of
    fields.FIELDS in order (tests hold them to the table), built in two dict literals: no
    call per field per machine.
    """
    machine, problems = _judged(record, now, limits, busy_queues, in_inventory)
    return _with_the_rest(machine, record, root_url, "stale" in problems,
                          "idle_with_work_waiting" in problems, problems,
                          None if quarantine is None else quarantine.as_json())


def _with_the_rest(machine: dict[str, Any], record: MachineRecord, root_url: str, stale: Any,
                   idle: Any, problems: Any, quarantine: Any) -> Machine:
    """machine_json's fields after _first_fields', the time-dependent ones as given (the one
    definition of their format and order, shared with machine_view_parts)."""
    get = record.details.get
    task_id = get("task_id")
    machine.update({
        "firstseen": get("firstseen"),
        "provisioner": get("provisioner"),
        "worker_type": get("worker_type"),
        "last_task": None if task_id is None else {
            "task_id": task_id,
            "run_id": get("run_id"),
            "state": get("state"),
            "reason_resolved": get("reason_resolved"),
            "time": get("task_time"),
            "url": task_url(root_url, task_id),
        },
        "counts": {"completed": get("completed", 0), "failed": get("failed", 0),
                   "exception": get("exception", 0)},
        "stale": stale,
        "idle_with_work_waiting": idle,
        "problems": problems,
        "quarantine": quarantine,
        "source": get("source"),
    })
    return cast(Machine, machine)


def _judged(record: MachineRecord, now: datetime, limits: Thresholds, busy_queues: Container[str],
            in_inventory: bool | None) -> tuple[dict[str, Any], list[str]]:
    """What both views of a machine start from: its first fields (id, machine, datacenter,
    lastseen, age_seconds; each view adds the rest in the table's order) and its problems."""
    lastseen, age = lastseen_and_age(record.lastseen, now)
    problems = machine_problems(facts_of(record, age, in_inventory), now, limits, busy_queues)
    return _first_fields(record.machine_id, lastseen, age), problems


def _first_fields(machine_id: str, lastseen: str | None, age: Any) -> dict[str, Any]:
    datacenter, hostname = split_machine_id(machine_id)
    return {"id": machine_id, "machine": hostname, "datacenter": datacenter,
            "lastseen": lastseen, "age_seconds": age}


# Where machine_view_parts cuts machine_json's bytes: orjson writes a Fragment's bytes as they
# are, and escapes every control character of a string, so no other raw NUL is in its output.
VIEW_CUT = b"\x00"
_CUT = orjson.Fragment(VIEW_CUT)


class ViewParts(NamedTuple):
    """A machine's answer in machine_json's bytes with its time-dependent fields cut out:
    `head` ends before age_seconds' value, `middle` runs from after it to before stale's,
    `tail` from after quarantine's to the end. The bytes between stale, idle_with_work_waiting,
    problems and quarantine are `TIME_FIELD_JOINS`, the same for every machine."""

    head: bytes
    middle: bytes
    tail: bytes


def _cut(record: MachineRecord, root_url: str) -> list[bytes]:
    # any time will do: the lastseen served does not depend on it, and its age is cut out
    lastseen, _ = lastseen_and_age(record.lastseen, _ANY_TIME)
    machine = _with_the_rest(_first_fields(record.machine_id, lastseen, _CUT), record, root_url,
                             _CUT, _CUT, _CUT, _CUT)
    return orjson.dumps(machine).split(VIEW_CUT)


_ANY_TIME = datetime(2000, 1, 1)
# ',"idle_with_work_waiting":', ',"problems":', ',"quarantine":' as machine_json writes them
TIME_FIELD_JOINS = tuple(_cut(MachineRecord("dc:host", None, {}), "")[2:5])


def machine_view_parts(record: MachineRecord, root_url: str) -> ViewParts:
    """The parts of machine_json's answer for `record` that do not change as time passes;
    orjson.JSONEncodeError when machine_json's answer cannot be encoded."""
    head, middle, *joins, tail = _cut(record, root_url)
    if tuple(joins) != TIME_FIELD_JOINS:  # a field between the time-dependent ones: cut again
        raise ValueError(f"machine_json's time-dependent fields are not together: {joins!r}")
    return ViewParts(head, middle, tail)


def counted_json(record: MachineRecord, now: datetime, root_url: str = "",
                 busy_queues: Container[str] = (), limits: Thresholds = Thresholds(), *,
                 in_inventory: bool | None = None,
                 quarantine: Quarantine | None = None) -> CountedMachine:
    """The fields of machine_json that `summary` counts and `select` filters and orders on, and
    only those (`last_task` holds only its state): a third less work for a summary or a page
    of a whole deployment.

    It takes machine_json's arguments, so that the one can stand for the other; it links to
    nothing, so `root_url` is not used. It builds the fields of Tier.COUNTED.
    """
    get = record.details.get
    machine, problems = _judged(record, now, limits, busy_queues, in_inventory)
    machine.update({
        "provisioner": get("provisioner"),
        "worker_type": get("worker_type"),
        "last_task": None if get("task_id") is None else {"state": get("state")},
        "stale": "stale" in problems,
        "idle_with_work_waiting": "idle_with_work_waiting" in problems,
        "problems": problems,
        "quarantine": None if quarantine is None else quarantine.as_json(),
    })
    return cast(CountedMachine, machine)


def machine_view(fields: Sequence[str] | None) -> Callable[..., Machine | CountedMachine]:
    """The lighter of machine_json and counted_json that builds the fields (None: every one),
    chosen once per request."""
    if fields is not None and tier_of(fields) <= Tier.COUNTED:
        return counted_json
    return machine_json


def recent_tasks(history: Sequence[Run], limit: int, root_url: str) -> list[dict[str, Any]]:
    """A machine's newest runs as the API shows them, newest first, at most `limit`."""
    return [{"task_id": run.task_id, "run_id": run.run_id, "state": run.state,
             "reason_resolved": run.reason_resolved, "started": run.started,
             "resolved": run.resolved, "url": task_url(root_url, run.task_id, run.run_id),
             "label": run.label, "attribution": run.attribution, "peers": run.peers,
             "peer_median_seconds": run.peer_median_seconds}
            for run in history[:limit]]


def never_seen_records(inventory: Mapping[str, str | None], seen: Container[str],
                       provisioner: str | None) -> list[MachineRecord]:
    """The inventory's machines not in `seen`, as records without a lastseen.

    They carry the inventory's worker type, and `provisioner` (the one the listener
    follows, when it follows only one), so they count in the same summary group as the
    machines of their pool that were seen.
    """
    return [MachineRecord(machine_id, None, {"worker_type": worker_type, "provisioner": provisioner})
            for machine_id, worker_type in inventory.items() if machine_id not in seen]


def busy_queues(pending: Mapping[str, int]) -> set[str]:
    """The `<provisioner>/<workerType>` queues with tasks waiting."""
    return {queue for queue, count in pending.items() if count > 0}


def select(machines: Sequence[M], query: MachineQuery) -> list[M]:
    """The machines matching every filter of the query, in its order."""
    def keep(machine: M) -> bool:
        last_task = machine["last_task"]
        return (
            (query.datacenter is None or machine["datacenter"] == query.datacenter)
            and (query.worker_type is None or machine["worker_type"] == query.worker_type)
            and (query.provisioner is None or machine["provisioner"] == query.provisioner)
            and (query.state is None or (last_task is not None and last_task["state"] == query.state))
            and _age_matches(machine["age_seconds"], query)
            and (query.problem is None or (
                bool(machine["problems"]) if query.problem == ANY_PROBLEM
                else query.problem in machine["problems"]))
            and (query.quarantined is None
                 or (machine["quarantine"] is not None) == query.quarantined)
        )

    selected = [machine for machine in machines if keep(machine)] if query.filtered else list(machines)
    if query.sort.lstrip("-") == "machine":
        sort_by_hostname(selected, query.sort.startswith("-"))
    else:
        # a machine never seen is older than any seen
        selected.sort(key=lambda machine: (machine["lastseen"] or "", machine["id"]),
                      reverse=query.sort.startswith("-"))
    return selected


def parse_fields(text: str) -> tuple[str, ...]:
    """The `fields` parameter: machine fields separated by commas, each named once in the answer."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",")))
    unknown = [name for name in names if name not in MACHINE_FIELDS]
    if not names or unknown:
        raise BadParameter("fields", f"unknown field {(unknown or [''])[0][:40]!r}; "
                                     f"fields are {', '.join(MACHINE_FIELDS)}")
    return names


def project(machines: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> list[dict[str, Any]]:
    """The machines with only the given fields, in that order."""
    return [{name: machine[name] for name in fields} for machine in machines]


def needs_records(query: MachineQuery, fields: Iterable[str]) -> bool:
    """False when the query and the fields need nothing but each machine's id and lastseen."""
    return (query.worker_type is not None or query.provisioner is not None
            or query.state is not None or query.problem is not None or query.include_never_seen
            or query.quarantined is not None
            or not LASTSEEN_FIELDS.issuperset(fields))


def sort_by_hostname(machines: list[Any], reverse: bool = False,
                     hostname: Callable[[Any], str] = itemgetter("machine"),
                     datacenter: Callable[[Any], str] = itemgetter("datacenter")) -> None:
    """Order machines by hostname, then datacenter, in place.

    Two stable sorts on one string each: a fraction of the time of one sort on the pair,
    and no key built per machine.
    """
    machines.sort(key=datacenter, reverse=reverse)
    machines.sort(key=hostname, reverse=reverse)


# A machine known by its id and lastseen only, as a plain tuple (ten thousand per poll).
LastseenRow = tuple[str, str, str, "str | None", "float | None"]
_LASTSEEN_ROW_FIELDS = ("machine", "datacenter", "id", "lastseen", "age_seconds")


def lastseen_rows(lastseen_by_id: Mapping[str, str], now: datetime, query: MachineQuery,
                  with_age: bool = False) -> list[LastseenRow]:
    """What select gives for a query that needs no records, from the ids and lastseen alone.

    No machine object is built and thrown away, and ages are computed only when asked or
    filtered on.
    """
    by_age = query.stale is not None or query.seen_within is not None
    if with_age or by_age:
        rows = []
        for machine_id, stored in lastseen_by_id.items():
            datacenter, hostname = split_machine_id(machine_id)
            lastseen, age = lastseen_and_age(stored, now)
            if _age_matches(age, query):
                rows.append((hostname, datacenter, machine_id, lastseen, age))
    else:
        rows = [(hostname, datacenter, machine_id,
                 stored if _in_lastseen_format(stored) else lastseen_and_age(stored, now)[0], None)
                for machine_id, stored in lastseen_by_id.items()
                for datacenter, hostname in (split_machine_id(machine_id),)]
    if query.datacenter is not None:
        rows = [row for row in rows if row[1] == query.datacenter]
    reverse = query.sort.startswith("-")
    if query.sort.lstrip("-") == "machine":
        sort_by_hostname(rows, reverse, itemgetter(0), itemgetter(1))
    else:
        rows.sort(key=itemgetter(3, 2), reverse=reverse)
    return rows


def lastseen_machines(rows: list[LastseenRow], fields: Sequence[str]) -> list[dict[str, Any]]:
    """The rows as machines with only the fields (all of LASTSEEN_FIELDS), in that order."""
    places = tuple((name, _LASTSEEN_ROW_FIELDS.index(name)) for name in fields)
    return [{name: row[at] for name, at in places} for row in rows]


# The proof of concept's fields: what its pollers ask for, ten thousand machines a poll.
POLL_FIELDS = ("machine", "datacenter", "lastseen")


def is_poll(query: MachineQuery, fields: Sequence[str]) -> bool:
    """True when poll_machines answers the query: the poll's fields, by hostname, by datacenter."""
    return (tuple(fields) == POLL_FIELDS and query.sort.lstrip("-") == "machine"
            and query == MachineQuery(datacenter=query.datacenter, sort=query.sort))


def poll_machines(lastseen_by_id: Mapping[str, str], now: datetime,
                  query: MachineQuery) -> list[dict[str, Any]]:
    """The answer to a query is_poll accepts, built straight from the ids and lastseen.

    A dict per machine and the sort, as cheap as serving these fields gets.
    """
    # split_machine_id and _in_lastseen_format inlined, from their own constants: a call of
    # each per machine would double the cost of building the answer
    wanted, length = query.datacenter, LASTSEEN_LENGTH
    machines = [
        {"machine": hostname, "datacenter": datacenter,
         "lastseen": stored if len(stored) == length else lastseen_and_age(stored, now)[0]}
        for machine_id, stored in lastseen_by_id.items()
        for datacenter, _, hostname in (machine_id.rpartition(MACHINE_ID_SEPARATOR),)
        if wanted is None or datacenter == wanted
    ]
    sort_by_hostname(machines, query.sort.startswith("-"))
    return machines


def _age_matches(age: float | None, query: MachineQuery) -> bool:
    return ((query.stale is None or (age is not None and age >= query.stale))
            and (query.seen_within is None or (age is not None and age <= query.seen_within)))


# A group of /summary: (datacenter, provisioner, worker type), "" for none.
GroupKey = tuple[str, str, str]


@dataclass
class GroupCounts:
    """What /summary counts of one group, however it was counted (from every machine, or from
    the machine index's figures): each of SUMMARY_COUNTS, and the machines with each problem."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUMMARY_COUNTS, 0))
    problems: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEMS, 0))


def summary(machines: Iterable[Mapping[str, Any]], pending: Mapping[str, int], stale_after: float,
            inventory: Container[str] = ()) -> dict[str, Any]:
    """Counts per datacenter x provisioner x worker type, and the work waiting per worker type.

    `machines` may hold the inventory's machines never seen (no lastseen): they count as
    `expected` and `never_seen`, never in `total`, which is the machines seen.
    """
    groups: dict[GroupKey, GroupCounts] = {}
    for machine in machines:
        # the provisioner is part of the key: two provisioners may share a worker type name,
        # and each has its own queue of pending tasks
        key = (machine["datacenter"], machine["provisioner"] or "", machine["worker_type"] or "")
        group = groups.get(key)
        if group is None:
            group = groups[key] = GroupCounts()
        counts, problems = group.counts, group.problems
        counts["expected"] += machine["id"] in inventory
        for code in machine["problems"]:
            problems[code] += 1
        # Taskcluster may quarantine a machine this service never saw
        counts["quarantined"] += machine["quarantine"] is not None
        if machine["lastseen"] is None:
            counts["never_seen"] += 1
            continue
        age = machine["age_seconds"]
        counts["total"] += 1
        counts["seen_within_1h"] += is_seen_within_the_hour(age)
        counts["stale"] += machine["stale"]
        last_task = machine["last_task"]
        counts["last_task_exception"] += last_task is not None and last_task["state"] == "exception"
        counts["idle_with_work_waiting"] += machine["idle_with_work_waiting"]
    return summary_answer(groups, pending, stale_after)


def summary_answer(groups: Mapping[GroupKey, GroupCounts], pending: Mapping[str, int],
                   stale_after: float) -> dict[str, Any]:
    """/summary from its groups' counts: the one definition of its answer. Each group with its
    work waiting, the groups in order, the totals, the work waiting per queue."""
    rows = [_summary_group(key, groups[key], pending) for key in sorted(groups)]
    totals: dict[str, Any] = {name: sum(group[name] for group in rows) for name in SUMMARY_COUNTS}
    totals["problems"] = {code: sum(group["problems"][code] for group in rows) for code in PROBLEMS}
    return {
        "stale_after_seconds": stale_after,
        "totals": totals,
        "groups": rows,
        "pending_tasks": dict(sorted(pending.items())),
    }


def _summary_group(key: GroupKey, counted: GroupCounts, pending: Mapping[str, int]) -> dict[str, Any]:
    datacenter, provisioner, worker_type = key
    return {"datacenter": datacenter, "worker_type": worker_type or None,
            "provisioner": provisioner or None,
            **{name: counted.counts[name] for name in SUMMARY_COUNTS},
            # the group's own queue: "" for a part it lacks, which no queue of Taskcluster has
            "pending_tasks": pending.get(queue_id(provisioner, worker_type), 0),
            "problems": {code: counted.problems[code] for code in PROBLEMS}}


def csv_columns(fields: Sequence[str] = CSV_FIELDS) -> tuple[str, ...]:
    """The CSV header of the fields: one column per field, several for last_task and counts."""
    return tuple(column for name in fields for column in FIELD[name].columns)


CSV_COLUMNS = csv_columns()


def csv_rows(machines: Iterable[Mapping[str, Any]],
             fields: Sequence[str] = CSV_FIELDS) -> Iterator[list[Any]]:
    """The machines flattened into csv_columns(fields); their problems joined by spaces."""
    plan = [(name, FIELD[name].csv_cells) for name in fields]
    for machine in machines:
        row: list[Any] = []
        for name, cells in plan:
            if cells is None:
                row.append(machine[name])
            else:
                row += cells(machine[name])
        yield row


def listener_report_time(listener: Mapping[str, str]) -> str:
    """When the listener last showed life: its heartbeat or its last message, whichever is later.

    An unreadable stored time loses to a readable one (comparing the strings would let
    garbage win); when neither can be read, the heartbeat is returned as stored.
    """
    stored = [text for text in (listener.get("heartbeat_at"), listener.get("last_message_at")) if text]
    readable = [(moment, text) for text in stored if (moment := _time_or_none(text)) is not None]
    if readable:
        return max(readable)[1]
    return stored[0] if stored else ""


def listener_check(listener: Mapping[str, str], now: datetime, silent_after: float,
                   quiet_after: float) -> tuple[str, dict[str, Any]]:
    """("ok" | "warning" | "error", details): the listener is alive when it reported within
    `silent_after` seconds; alive but fed no message for `quiet_after` is a warning."""
    detail: dict[str, Any] = {name: listener.get(name) for name in (
        "heartbeat_at", "last_message_at", "last_connected_at", "newest_event_at")}
    reported_at = listener_report_time(listener)
    if not reported_at:
        detail["problem"] = "the listener has never reported"
        return "error", detail
    silence = seconds_since(reported_at, now)
    if silence is None:
        detail["problem"] = "the listener's stored heartbeat is unreadable"
        return "error", detail
    detail["seconds_since_heartbeat"] = round(silence, 1)
    if -silence > silent_after:
        # a clock far ahead, or a corrupt time: it would hide a dead listener for good
        detail["problem"] = f"the listener's stored heartbeat is {-silence:.0f}s in the future"
        return "error", detail
    if silence > silent_after:
        detail["problem"] = f"no listener heartbeat for {silence:.0f}s"
        return "error", detail
    quiet = seconds_since(listener.get("last_message_at"), now)
    if quiet is None or quiet > quiet_after:
        # alive but fed nothing: a lost binding or a silent queue looks just like this
        detail["problem"] = ("the listener has received no message yet" if quiet is None
                             else f"the listener is up but has received no message for {quiet:.0f}s")
        return "warning", detail
    return "ok", detail


def _time_or_none(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


def seconds_since(text: str | None, now: datetime) -> float | None:
    """Seconds from a stored time to now; None when absent or unreadable."""
    moment = _time_or_none(text) if text else None
    return None if moment is None else round((now - moment).total_seconds(), 3)


def taskcluster_poll_state(status: Mapping[str, Any], now: datetime,
                           poll_seconds: float) -> dict[str, Any]:
    """How old the quarantines served are: the last good Taskcluster poll, its age in seconds
    (None when there was none, or polling is off) and the failed polls since it."""
    last_good = status.get("last_good_poll_at")
    return {
        "polling": bool(poll_seconds),
        "last_good_poll_at": last_good,
        "age_seconds": seconds_since(last_good, now) if poll_seconds else None,
        "consecutive_failures": status.get("consecutive_failures", 0),
    }


def taskcluster_check(status: Mapping[str, Any], now: datetime,
                      poll_seconds: float) -> tuple[str, dict[str, Any]]:
    """("ok" | "warning", details) of the Taskcluster poll: a warning, never an error (the
    fleet's data does not depend on it), when the last good poll is older than
    TASKCLUSTER_POLLS_LATE polls or never happened while polling is on."""
    detail = taskcluster_poll_state(status, now, poll_seconds)
    detail.update(last_error=status.get("last_error"), last_error_at=status.get("last_error_at"))
    if not poll_seconds:
        detail["note"] = "TASKCLUSTER_POLL is 0: quarantines are not polled"
        return "ok", detail
    age = detail["age_seconds"]
    if age is None:
        detail["problem"] = ("Taskcluster has never been polled successfully" if not
                             status.get("last_good_poll_at")
                             else "the last good Taskcluster poll's time is unreadable")
        return "warning", detail
    late_after = TASKCLUSTER_POLLS_LATE * poll_seconds
    if age > late_after:
        detail["problem"] = (f"no good Taskcluster poll for {age:.0f}s (more than "
                             f"{TASKCLUSTER_POLLS_LATE} polls): the quarantines shown may be out "
                             "of date")
        return "warning", detail
    return "ok", detail
