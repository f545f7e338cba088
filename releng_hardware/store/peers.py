"""A label's runs as the store keeps them, and a run's peers counted from them.

Per label the store keeps one string: the label on its first line, then its newest
resolved runs (at most LABEL_RUNS), newest first, one fixed-width line each laid out as
PEER_FIELDS. The batch script writes and judges them (lua/record_batch.lua, with the
same definition of peers as `peer_counts` here); the web only decodes and counts them.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Protocol, TypeVar

from ..core.records import COMPLETED, EXCEPTION, FAILED, LOST

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
_CODE_AT, _MACHINE_AT = _CODE.start, _MACHINE.start


class PeerRun(NamedTuple):
    """One resolved run of a label."""

    time_ms: int
    code: str
    duration_ms: int
    task_id: str
    run_id: int
    machine_id: str
    worker_type: str


class PeerMark(NamedTuple):
    """What counting peers reads of one resolved run of a label (PeerRun's fields of the same
    names): a machine's page decodes only this of each of its labels' runs."""

    time_ms: int
    code: str
    machine_id: str


class _Peer(Protocol):
    """A label's run as peer_runs and peer_counts read it: a PeerRun or a PeerMark."""

    @property
    def time_ms(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def machine_id(self) -> str: ...


_PeerT = TypeVar("_PeerT", bound=_Peer)


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


def decode_label_marks(raw: str | None) -> tuple[str, list[PeerMark]]:
    """A label's stored string as (label, what counting reads of its runs, newest first);
    ("", []) for none. decode_label's runs, cut down to PeerMark."""
    if not raw:
        return "", []
    name, _, lines = raw.partition("\n")
    time, code_at, machine_at = _TIME, _CODE_AT, _MACHINE_AT
    return name, [PeerMark(int(line[time]), line[code_at], line[machine_at:].partition(" ")[0])
                  for line in lines.split("\n")] if lines else []


def peer_runs(runs: Iterable[_PeerT], machine_id: str, time_ms: int,
              window_ms: int) -> list[_PeerT]:
    """The runs of other machines within `window_ms` before or after `time_ms`."""
    return [run for run in runs
            if run.machine_id != machine_id and abs(run.time_ms - time_ms) <= window_ms]


def peer_counts(runs: Iterable[_Peer]) -> dict[str, int]:
    """Distinct machines with a failed (or counted exception) and with a completed run."""
    failed = {run.machine_id for run in runs if run.code in FAILING}
    completed = {run.machine_id for run in runs if run.code == COMPLETED}
    return {"failed": len(failed), "completed": len(completed)}


def lua_spans() -> dict[str, list[int]]:
    """Each field's first and last position as Lua's string.sub counts (from 1; -1 is the end)."""
    return {name: [span.start + 1, -1 if span.stop is None else span.stop]
            for name, span in PEER_SPANS.items()}
