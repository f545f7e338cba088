"""The plain data the layers share: a machine as stored, one of its runs, a run's outcome code.

No I/O and no Redis: the store builds these, the problem rules and the views read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, NamedTuple, Sequence, TypedDict

# A run's outcome in one character: what `outcomes` and the history store per run.
COMPLETED, FAILED, EXCEPTION, LOST, NOT_COUNTED, RUNNING = "c", "f", "e", "l", "x", "r"
# What a record's `source` says of a machine known only from `releng-hardware backfill`
# (Taskcluster's worker list); null is every other machine: seen by the listener, preloaded, or
# never seen. The backfill script writes it (store.scripts' prelude).
SOURCE_TASKCLUSTER = "taskcluster"
# The queue ended these runs for reasons outside the machine: they say nothing
# about its health either way.
NOT_COUNTED_REASONS = frozenset({"canceled", "superseded", "deadline-exceeded"})
# The queue gave up on a run whose worker stopped reclaiming it: the machine died mid-task.
LOST_REASON = "claim-expired"
STATE_OF_OUTCOME = {COMPLETED: "completed", FAILED: "failed", EXCEPTION: "exception",
                    LOST: "exception", NOT_COUNTED: "exception", RUNNING: "running"}
OUTCOME_OF_STATE = {"completed": COMPLETED, "failed": FAILED}


def outcome_code(state: str, reason: str | None) -> str:
    """The one character a run's state and reason count as in `outcomes`."""
    if state == "exception":
        if reason in NOT_COUNTED_REASONS:
            return NOT_COUNTED
        return LOST if reason == LOST_REASON else EXCEPTION
    return OUTCOME_OF_STATE.get(state, RUNNING)


def state_of_outcome(code: str) -> str:
    """The run state an outcome character stands for."""
    return STATE_OF_OUTCOME[code]


class Run(NamedTuple):
    """One run of a machine's history; times in the lastseen format, None when not known."""

    task_id: str
    run_id: int
    state: str
    reason_resolved: str | None
    started: str | None
    resolved: str | None
    # the task's label (as decoded: its reference, which the store resolves), None when none
    label: str | None = None
    # "task", "machine" or None: what a failed or counted-exception run is put down to
    attribution: str | None = None
    # a completed run's peers' median duration (at least 3 of them), known when it was recorded
    peer_median_seconds: float | None = None
    # a completed run's duration (resolved - started)
    duration_seconds: float | None = None
    # distinct other machines with a failed (or counted exception) and a completed peer run
    peers: Mapping[str, int] | None = None


class RecordDetails(TypedDict, total=False):
    """What `machine_records` holds per machine (a JSON object the Lua scripts write: seen.lua,
    lua/batch_*.lua, record_batch.lua, backfill.lua); every field may be missing."""

    # the newest event's task (batch_lastseen.lua)
    provisioner: str
    worker_type: str
    task_id: str
    run_id: int
    state: str  # "running", "completed", "failed" or "exception"
    task_time: str  # the newest event's time (the lastseen format)
    reason_resolved: str
    firstseen: str  # the earliest evidence of life (the lastseen format)
    # runs ended per state, counted once each (record_batch.lua)
    completed: int
    failed: int
    exception: int
    outcomes: str  # the ended runs' outcome codes, newest first (batch_outcomes.lua)
    attributions: str  # their attribution letters, once a run has a label
    peer_ratios: list[float]  # the newest completed runs' durations over their peers' median
    legacy_runs: int  # 1: a run set of the version before the history is kept (batch_history.lua)
    source: str  # SOURCE_TASKCLUSTER for a machine known only from the backfill


class MachineRecord(NamedTuple):
    """One machine as stored: its lastseen and, when known, what it last did.

    A NamedTuple, not a frozen dataclass: /machines builds ten thousand per request.
    `history` (newest first) is read only for one machine at a time.
    """

    machine_id: str
    lastseen: str | None  # None only for an inventory machine never seen (built by the views)
    # a RecordDetails as the store reads it; Mapping[str, Any] for the readers that take values
    # of every field as one type (problems.MachineFacts) and the views that build one of their own
    details: Mapping[str, Any]
    history: Sequence[Run] = ()


class QuarantineJSON(TypedDict):
    """A machine's quarantine in Taskcluster, as the API serves it."""

    until: str
    reason: str | None
    by: str | None


class Quarantine(NamedTuple):
    """A machine's quarantine in Taskcluster: until when (the lastseen format), why, by whom,
    and the `<provisioner>/<workerType>` it was read for."""

    until: str
    reason: str | None
    by: str | None
    queue: str

    def as_json(self) -> QuarantineJSON:
        """What the API serves as a machine's `quarantine`."""
        return {"until": self.until, "reason": self.reason, "by": self.by}


@dataclass(frozen=True, slots=True)
class BackfillItem:
    """What a backfill writes for one machine (times naive UTC)."""

    machine_id: str
    lastseen: datetime
    firstseen: datetime | None
    provisioner: str
    worker_type: str
