"""A machine's history in Redis: one fixed-width entry per run, newest first, one per line.

An entry is its FIELDS one after the other, each of a fixed width but the last. Its
first 40 characters sort it: plain string comparison of two entries orders their runs
(greater is newer), so the store's script inserts, finds and trims entries by position
with string work only and never decodes one. The widths are named here once: the
%-format the listener fills, the slices Python decodes with and the positions the
batch script reads (`lua_spans`, passed to it with every batch) all come from FIELDS.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime

from ..core.records import (COMPLETED, EXCEPTION, FAILED, LOST, LOST_REASON, NOT_COUNTED, RUNNING, Run,
                      state_of_outcome)
from ..core.times import epoch_milliseconds, format_lastseen, from_epoch_milliseconds

# (name, width, %-conversion) in the entry's order; the last field takes the rest.
FIELDS: tuple[tuple[str, int | None, str], ...] = (
    # the run's latest time (resolved, else started), epoch milliseconds: 1970 to 2286
    ("time", 13, "d"),
    # 1 once ended: a resolution sorts after a start at the same instant
    ("ended", 1, "d"),
    ("task_id", 22, "s"),  # a slugid
    ("run_id", 4, "d"),  # events.MAX_RUN_ID fits
    ("code", 1, "s"),  # the run's records.outcome_code
    ("started", 13, "d"),  # epoch milliseconds, zeros when not known
    # what the failure of a run is put down to (ATTRIBUTIONS), set by the batch script. Upper
    # case: an entry written before labels has its reason, lower case, or nothing here
    ("attribution", 1, "s"),
    # the label's reference (label_ref, filled by the batch script), NO_LABEL when none
    ("label", 10, "s"),
    # a completed run's peer median duration in milliseconds, known when it was recorded; 0: none
    ("peer_median", 10, "d"),
    ("reason", None, "s"),  # the reason, only when the code does not say it
)
# What a run's failure is put down to, as an entry's attribution character.
NO_ATTRIBUTION, MACHINE_ATTRIBUTION, TASK_ATTRIBUTION = "N", "M", "T"
# An entry's attribution character -> the API's attribution; weakest first, as the batch script
# ranks them (a judgement only rises).
ATTRIBUTIONS = {NO_ATTRIBUTION: None, MACHINE_ATTRIBUTION: "machine", TASK_ATTRIBUTION: "task"}
NO_LABEL = "-" * 10


def _spans() -> dict[str, slice]:
    spans, offset = {}, 0
    for name, width, _ in FIELDS:
        spans[name] = slice(offset, None if width is None else offset + width)
        offset += width or 0
    # which run an entry is about: a run's entries agree on it whatever their state
    spans["run_key"] = slice(spans["task_id"].start, spans["run_id"].stop)
    return spans


# Where each field is, as a Python slice.
SPANS: dict[str, slice] = _spans()
# Filled by position, which is four times as fast as str.format with names.
HISTORY_ENTRY = "".join("%s" if kind == "s" else f"%0{width}d" for _, width, kind in FIELDS)

_WIDTHS = {name: width for name, width, _ in FIELDS if width is not None}
_MAX_TIME = 10 ** _WIDTHS["time"] - 1
_TASK_ID_WIDTH = _WIDTHS["task_id"]
_LABEL_WIDTH = _WIDTHS["label"]
# Outcome codes that do not say the reason: the entry keeps it.
_REASON_KEPT = (EXCEPTION, NOT_COUNTED)
# The reason an entry leaves out because its outcome code says it.
_REASON_OF_OUTCOME = {COMPLETED: "completed", FAILED: "failed", LOST: LOST_REASON, RUNNING: None}
_TIME, _TASK_ID, _RUN_ID, _STARTED, _REASON, _LABEL, _PEER_MEDIAN = (
    SPANS[name] for name in ("time", "task_id", "run_id", "started", "reason", "label",
                             "peer_median"))
_CODE_AT = SPANS["code"].start
_ATTRIBUTION_AT = SPANS["attribution"].start
# where an entry written before labels has its reason. Upgrade shim: goes with decode_entry's
# branch for such entries once no Redis holds one: every machine kept has since run as many
# tasks as its history holds (RECENT_TASKS), or RETENTION removed it
_OLD_REASON = slice(_ATTRIBUTION_AT, None)


def entry_time(moment: datetime) -> int:
    """`moment` as an entry's epoch milliseconds, clamped to what the field's width holds."""
    # a time outside would break the entry's fixed width
    milliseconds = epoch_milliseconds(moment)
    if 0 < milliseconds <= _MAX_TIME:
        return milliseconds
    return 1 if milliseconds < 1 else _MAX_TIME


# the listener names a label for most messages, and a fleet runs few: each is hashed once
@functools.lru_cache(maxsize=4096)
def label_ref(label: str) -> str:
    """The short reference an entry and the store's key of a label name it by."""
    # 40 bits of SHA-1: a collision among the labels of one window is unlikely enough
    return hashlib.sha1(label.encode()).hexdigest()[:_LABEL_WIDTH]


def encode_entry(latest: datetime, started: datetime | None, task_id: str, run_id: int, code: str,
                 reason: str | None, label: str | None = None) -> str:
    """One run as a history entry; `latest` is its resolution, else its start."""
    if len(task_id) != _TASK_ID_WIDTH:
        raise ValueError(f"taskId {task_id!r} is not a slugid")
    return HISTORY_ENTRY % (
        entry_time(latest), code != RUNNING, task_id, run_id, code,
        0 if started is None else entry_time(started), NO_ATTRIBUTION,
        NO_LABEL if label is None else label_ref(label), 0,
        reason or "" if code in _REASON_KEPT else "")


def _history_time(milliseconds: int) -> str | None:
    return format_lastseen(from_epoch_milliseconds(milliseconds)) if milliseconds else None


def decode_entry(entry: str) -> Run:
    """The run a history entry holds; `label` is the label's reference (label_ref)."""
    code = entry[_CODE_AT]
    started, latest = int(entry[_STARTED]), int(entry[_TIME])
    resolved = None if code == RUNNING else _history_time(latest)
    if entry[_ATTRIBUTION_AT:_ATTRIBUTION_AT + 1] not in ATTRIBUTIONS:  # written before labels
        return Run(entry[_TASK_ID], int(entry[_RUN_ID]), state_of_outcome(code),
                   entry[_OLD_REASON] or _REASON_OF_OUTCOME.get(code), _history_time(started),
                   resolved)
    label, median = entry[_LABEL], int(entry[_PEER_MEDIAN])
    return Run(entry[_TASK_ID], int(entry[_RUN_ID]), state_of_outcome(code),
               entry[_REASON] or _REASON_OF_OUTCOME.get(code), _history_time(started), resolved,
               None if label == NO_LABEL else label, ATTRIBUTIONS[entry[_ATTRIBUTION_AT]],
               median / 1000 if median else None,
               (latest - started) / 1000 if code == COMPLETED and started else None)


def decode_history(raw: str | None) -> tuple[Run, ...]:
    """A machine's stored history as runs, newest first; empty when it has none."""
    return tuple(decode_entry(entry) for entry in raw.split("\n")) if raw else ()


def lua_spans() -> dict[str, list[int]]:
    """Each field's first and last position as Lua's string.sub counts (from 1; -1 is the end)."""
    return {name: [span.start + 1, -1 if span.stop is None else span.stop]
            for name, span in SPANS.items()}
