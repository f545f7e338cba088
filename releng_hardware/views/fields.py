"""A machine as the API serves it: one table of its fields, and its types.

FIELDS drives `fields=` (which names exist, which need only the `machines` hash, which
builder serves them), the CSV columns and the OpenAPI schema of a machine. The builders in
`fleet` stay dict literals, the fastest way CPython builds ten thousand machines; the tests
hold their keys to this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from operator import attrgetter
from typing import Any, Callable, Iterable, Mapping, TypedDict

from ..core.events import WORKER_EXCHANGES
from ..core.problems import PROBLEMS
from ..core.records import SOURCE_TASKCLUSTER, QuarantineJSON

# The states of a run, so of a machine's last task.
STATES = tuple(WORKER_EXCHANGES.values())
# A machine's `counts`: the store counts its runs per resolved state.
RUN_COUNTS = tuple(state for state in STATES if state != "running")
LASTSEEN_EXAMPLE = "2026-11-20T14:55:00.000000"


class LastTask(TypedDict):
    """A machine's newest run, as machine_json serves it."""

    task_id: str
    run_id: int | None
    state: str | None
    reason_resolved: str | None
    time: str | None
    url: str


class Counts(TypedDict):
    """The runs resolved on a machine since tracking began, per RUN_COUNTS."""

    completed: int
    failed: int
    exception: int


class Machine(TypedDict):
    """One machine as /machines serves it (fleet.machine_json): the keys of FIELDS, in order."""

    id: str
    machine: str
    datacenter: str
    lastseen: str | None
    age_seconds: float | None
    firstseen: str | None
    provisioner: str | None
    worker_type: str | None
    last_task: LastTask | None
    counts: Counts
    stale: bool
    idle_with_work_waiting: bool
    problems: list[str]
    quarantine: QuarantineJSON | None
    source: str | None


class MachineDetail(Machine):
    """One machine as /machines/<id> serves it: with its newest runs."""

    recent_tasks: list[dict[str, Any]]


class CountedMachine(TypedDict):
    """What fleet.counted_json builds: the fields of Tier.COUNTED, and of last_task only its
    state (what select filters on), which is not the last_task served."""

    id: str
    machine: str
    datacenter: str
    lastseen: str | None
    age_seconds: float | None
    provisioner: str | None
    worker_type: str | None
    last_task: dict[str, str | None] | None
    stale: bool
    idle_with_work_waiting: bool
    problems: list[str]
    quarantine: QuarantineJSON | None


class Tier(IntEnum):
    """The lightest view of a machine that builds a field; a request is served by the
    heaviest tier among its fields."""

    LASTSEEN = 0  # from its id and lastseen alone: the `machines` hash, no record read
    COUNTED = 1  # fleet.counted_json: the record's pool and the judgement of its problems
    FULL = 2  # fleet.machine_json only


def _nullable(type_name: str, **extra: Any) -> dict[str, Any]:
    return {"type": [type_name, "null"], **extra}


# The OpenAPI schema of each key of LastTask, in the order machine_json builds them.
_LAST_TASK_PROPERTIES: dict[str, Any] = {
    "task_id": {"type": "string"},
    "run_id": _nullable("integer"),
    "state": {"type": ["string", "null"], "enum": [*STATES, None]},
    "reason_resolved": _nullable("string"),
    "time": _nullable("string", description="when the run reached this state (UTC)"),
    "url": {"type": "string", "description": "the task in the Taskcluster UI"},
}
LAST_TASK_FIELDS = tuple(_LAST_TASK_PROPERTIES)
# The OpenAPI schema of a last task (the document files it under LastTask).
LAST_TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(LAST_TASK_FIELDS),
    "properties": _LAST_TASK_PROPERTIES,
    "additionalProperties": False,
}
# The CSV flattens last_task into these, each column named last_task_<cell>: all but its time.
LAST_TASK_CELLS = tuple(name for name in LAST_TASK_FIELDS if name != "time")


def _last_task_cells(task: LastTask | None) -> list[Any]:
    source: Mapping[str, object] = task or {}
    got = source.get
    return [got(cell) for cell in LAST_TASK_CELLS]


def _count_cells(counts: Counts) -> list[int]:
    return [counts[name] for name in RUN_COUNTS]  # type: ignore[literal-required]


def _problem_cells(problems: list[str]) -> list[str]:
    return [" ".join(problems)]


# A machine's quarantine: its keys, in the order records.Quarantine.as_json builds them.
QUARANTINE_FIELDS = ("until", "reason", "by")
# The CSV flattens quarantine into these, each column named quarantine_<key>.
QUARANTINE_COLUMNS = tuple(f"quarantine_{name}" for name in QUARANTINE_FIELDS)


def _quarantine_cells(quarantine: QuarantineJSON | None) -> list[Any]:
    if quarantine is None:
        return [None] * len(QUARANTINE_FIELDS)
    return [quarantine[name] for name in QUARANTINE_FIELDS]  # type: ignore[literal-required]


@dataclass(frozen=True)
class MachineField:
    """One field of a machine: its name, what builds it, its CSV form and its schema.

    The schemas go into every OpenAPI document as they are, like openapi's own constants:
    never mutated.
    """

    name: str
    tier: Tier
    schema: dict[str, Any]
    # its place among the CSV form's columns when /machines names no fields; None: only asked
    csv_place: int | None
    # its CSV columns and its value as their cells, when not one column of its own name
    csv_columns: tuple[str, ...] = ()
    csv_cells: Callable[[Any], list[Any]] | None = None
    # its schema in /machines/<id> when it differs there
    detail_schema: dict[str, Any] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """Its columns in the CSV form."""
        return self.csv_columns or (self.name,)


_LASTSEEN_DESCRIPTION = "naive UTC, six fraction digits"

# Every field of a machine as the API serves it, in the order it serves them.
FIELDS = (
    MachineField("id", Tier.LASTSEEN, {"type": "string", "description": "<datacenter>:<hostname>",
                                       "examples": ["mdc1:t-linux64-ms-100"]}, 0),
    MachineField("machine", Tier.LASTSEEN,
                 {"type": "string", "description": "the hostname (worker id)"}, 2),
    MachineField("datacenter", Tier.LASTSEEN,
                 {"type": "string", "description": "the worker group"}, 1),
    # a machine never seen is listed (include=never_seen), never served alone
    MachineField("lastseen", Tier.LASTSEEN,
                 _nullable("string", description=f"{_LASTSEEN_DESCRIPTION}; null only for an "
                                                 "inventory machine never seen "
                                                 "(include=never_seen)",
                           examples=[LASTSEEN_EXAMPLE]), 3,
                 detail_schema={"type": "string", "description": _LASTSEEN_DESCRIPTION,
                                "examples": [LASTSEEN_EXAMPLE]}),
    MachineField("age_seconds", Tier.LASTSEEN, _nullable("number", description="now - lastseen"),
                 4),
    MachineField("firstseen", Tier.FULL, _nullable("string"), 5),
    MachineField("provisioner", Tier.COUNTED, _nullable("string"), 6),
    MachineField("worker_type", Tier.COUNTED, _nullable("string"), 7),
    MachineField("last_task", Tier.FULL,
                 {"anyOf": [{"$ref": "#/components/schemas/LastTask"}, {"type": "null"}]}, 8,
                 tuple(f"last_task_{cell}" for cell in LAST_TASK_CELLS), _last_task_cells),
    MachineField("counts", Tier.FULL, {
        "type": "object",
        "description": "runs resolved on the machine since tracking began",
        "required": list(RUN_COUNTS),
        "properties": {name: {"type": "integer", "minimum": 0} for name in RUN_COUNTS},
        "additionalProperties": False,
    }, 9, RUN_COUNTS, _count_cells),
    MachineField("stale", Tier.COUNTED,
                 {"type": "boolean", "description": "not seen for STALE_AFTER"}, None),
    MachineField("idle_with_work_waiting", Tier.COUNTED, {
        "type": "boolean", "description": "stale while its worker type has pending tasks"}, 10),
    MachineField("problems", Tier.COUNTED, {
        "type": "array",
        "items": {"type": "string", "enum": list(PROBLEMS)},
        "description": "what is wrong with the machine, sorted; empty when all is well"},
        11, csv_cells=_problem_cells),
    # from the `quarantine` hash the listener's Taskcluster poll keeps, read once per request
    MachineField("quarantine", Tier.COUNTED, {
        "type": ["object", "null"],
        "description": "its quarantine in Taskcluster as last polled (or set by `releng-hardware "
                       "quarantine`); null when none, or once `until` has passed",
        "required": list(QUARANTINE_FIELDS),
        "properties": {
            "until": {"type": "string", "description": _LASTSEEN_DESCRIPTION,
                      "examples": [LASTSEEN_EXAMPLE]},
            "reason": _nullable("string", description="Taskcluster's quarantineInfo"),
            "by": _nullable("string", description="the clientId that set it"),
        },
        "additionalProperties": False,
    }, 12, QUARANTINE_COLUMNS, _quarantine_cells),
    MachineField("source", Tier.FULL, {
        "type": ["string", "null"], "enum": [SOURCE_TASKCLUSTER, None],
        "description": "taskcluster: known only from a backfill of Taskcluster's worker list "
                       "(lastseen to ±30 min) until the listener sees it; null otherwise"}, 13),
)
FIELD = {field.name: field for field in FIELDS}
MACHINE_FIELDS = tuple(FIELD)
# The fields that follow from a machine's id and lastseen alone: a /machines asking for no
# other reads the `machines` hash only and builds nothing it would throw away.
LASTSEEN_FIELDS = frozenset(field.name for field in FIELDS if field.tier is Tier.LASTSEEN)
# The fields the CSV form has when /machines does not name them.
CSV_FIELDS = tuple(field.name for field in sorted(
    (field for field in FIELDS if field.csv_place is not None), key=attrgetter("csv_place")))


def tier_of(fields: Iterable[str]) -> Tier:
    """The lightest view that builds every one of the fields."""
    return max((FIELD[name].tier for name in fields), default=Tier.LASTSEEN)
