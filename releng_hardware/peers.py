"""A label's runs as the store keeps them, and a run's peers counted from them.

Per label the store keeps one string: the label on its first line, then its newest
resolved runs (at most LABEL_RUNS), newest first, one fixed-width line each laid out as
PEER_FIELDS. The batch script writes and judges them (lua/record_batch.lua, with the
same definition of peers as `peer_counts` here); the web only decodes and counts them.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from .records import COMPLETED, EXCEPTION, FAILED, LOST

# The newest resolved runs kept per label: at most 2 KB a label with the longest label and
# typical machine ids and worker types (docs/architecture.md).
LABEL_RUNS = 16
# Outcome codes of a run that counts as a failure among peers: failed, or a counted exception.
FAILING = FAILED + EXCEPTION + LOST
# (name, width) of a label's run line; the last field takes the rest: "<machine id> <worker type>"
PEER_FIELDS: tuple[tuple[str, int | None], ...] = (
    ("time", 13),  # the run's resolution, epoch milliseconds (history.entry_time)
    ("code", 1),  # its records.outcome_code
    ("attribution", 1),  # as the history entry's
    ("duration", 10),  # a completed run's, milliseconds; 0 otherwise
    ("run_key", 26),  # its task id and run id, as the history entry's run_key
    ("machine", None),
)


def _spans() -> dict[str, slice]:
    spans, offset = {}, 0
    for name, width in PEER_FIELDS:
        spans[name] = slice(offset, None if width is None else offset + width)
        offset += width or 0
    return spans


PEER_SPANS: dict[str, slice] = _spans()
_TIME, _CODE, _DURATION, _RUN_KEY, _MACHINE = (
    PEER_SPANS[name] for name in ("time", "code", "duration", "run_key", "machine"))


class PeerRun(NamedTuple):
    """One resolved run of a label."""

    time_ms: int
    code: str
    duration_ms: int
    task_id: str
    run_id: int
    machine_id: str
    worker_type: str


def decode_label(raw: str | None) -> tuple[str, list[PeerRun]]:
    """A label's stored string as (label, its runs newest first); ("", []) for none."""
    if not raw:
        return "", []
    name, _, lines = raw.partition("\n")
    runs = []
    for line in lines.split("\n") if lines else ():
        machine_id, _, worker_type = line[_MACHINE].partition(" ")
        run_key = line[_RUN_KEY]
        runs.append(PeerRun(int(line[_TIME]), line[_CODE], int(line[_DURATION]), run_key[:22],
                            int(run_key[22:]), machine_id, worker_type))
    return name, runs


def peer_runs(runs: Iterable[PeerRun], machine_id: str, time_ms: int,
              window_ms: int) -> list[PeerRun]:
    """The runs of other machines within `window_ms` before or after `time_ms`."""
    return [run for run in runs
            if run.machine_id != machine_id and abs(run.time_ms - time_ms) <= window_ms]


def peer_counts(runs: Iterable[PeerRun]) -> dict[str, int]:
    """Distinct machines with a failed (or counted exception) and with a completed run."""
    failed = {run.machine_id for run in runs if run.code in FAILING}
    completed = {run.machine_id for run in runs if run.code == COMPLETED}
    return {"failed": len(failed), "completed": len(completed)}


def lua_spans() -> dict[str, list[int]]:
    """Each field's first and last position as Lua's string.sub counts (from 1; -1 is the end)."""
    return {name: [span.start + 1, -1 if span.stop is None else span.stop]
            for name, span in PEER_SPANS.items()}
