"""The history entry codec: every outcome round-trips, times clamp, entries sort by run."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from releng_hardware.store.machines import history
from releng_hardware.core.records import (COMPLETED, EXCEPTION, FAILED, LOST, LOST_REASON, NOT_COUNTED,
                                     RUNNING, Run, outcome_code)
from releng_hardware.core.times import format_lastseen

TASK = "AAAAAAAAQAGAAAAAAAAAAA"
STARTED = datetime(2026, 11, 20, 12, 0, 0)
RESOLVED = STARTED + timedelta(minutes=7, milliseconds=250)


def round_trip(state: str, reason: str | None, *, started: datetime | None = STARTED,
               latest: datetime = RESOLVED, run_id: int = 3) -> Run:
    entry = history.encode_entry(latest, started, TASK, run_id, outcome_code(state, reason), reason)
    return history.decode_entry(entry)


@pytest.mark.parametrize(("state", "reason", "code"), [
    ("completed", "completed", COMPLETED),
    ("failed", "failed", FAILED),
    ("exception", "worker-shutdown", EXCEPTION),
    ("exception", LOST_REASON, LOST),
    ("exception", "canceled", NOT_COUNTED),
    ("exception", "superseded", NOT_COUNTED),
])
def test_every_ended_outcome_round_trips_with_its_reason(state, reason, code):
    assert outcome_code(state, reason) == code
    run = round_trip(state, reason)
    assert run[:6] == Run(TASK, 3, state, reason, format_lastseen(STARTED),
                          format_lastseen(RESOLVED))[:6]
    # a completed run knows how long it took; no label, so no attribution and no peers
    assert run.duration_seconds == (420.25 if code == COMPLETED else None)
    assert (run.label, run.attribution, run.peer_median_seconds) == (None, None, None)


def test_a_running_entry_has_no_resolution_and_no_reason():
    entry = history.encode_entry(STARTED, STARTED, TASK, 0, RUNNING, None)
    assert history.decode_entry(entry) == Run(TASK, 0, "running", None, format_lastseen(STARTED), None)


def test_a_reason_the_code_says_is_left_out_of_the_entry():
    said = history.encode_entry(RESOLVED, STARTED, TASK, 3, LOST, LOST_REASON)
    kept = history.encode_entry(RESOLVED, STARTED, TASK, 3, EXCEPTION, "worker-shutdown")
    assert said[history.SPANS["reason"]] == ""
    assert kept[history.SPANS["reason"]] == "worker-shutdown"


def test_a_missing_start_reads_back_as_none():
    assert round_trip("completed", "completed", started=None).started is None


def test_times_outside_the_width_are_clamped_and_keep_the_entry_fixed_width():
    early = history.encode_entry(datetime(1960, 1, 1), datetime(1950, 1, 1), TASK, 1, COMPLETED, None)
    late = history.encode_entry(datetime(2400, 1, 1), datetime(2399, 1, 1), TASK, 1, COMPLETED, None)
    assert len(early) == len(late) == history.SPANS["reason"].start
    assert history.decode_entry(early).resolved == "1970-01-01T00:00:00.001000"
    assert history.decode_entry(late).resolved == history.decode_entry(late).started
    assert history.entry_time(datetime(2400, 1, 1)) == history.entry_time(datetime(2300, 1, 1))


def test_a_task_id_that_is_not_a_slugid_is_refused():
    with pytest.raises(ValueError, match="slugid"):
        history.encode_entry(RESOLVED, STARTED, "short", 0, COMPLETED, None)


def test_a_greater_entry_is_a_newer_run_and_a_resolution_sorts_after_its_start():
    start = history.encode_entry(STARTED, STARTED, TASK, 0, RUNNING, None)
    resolution = history.encode_entry(STARTED, STARTED, TASK, 0, FAILED, None)
    later = history.encode_entry(STARTED + timedelta(milliseconds=1), None, "B" * 22, 0, RUNNING, None)
    assert start < resolution < later
    assert start[history.SPANS["run_key"]] == resolution[history.SPANS["run_key"]] == TASK + "0000"


def test_a_history_decodes_newest_first_and_an_empty_one_to_nothing():
    newer = history.encode_entry(RESOLVED, STARTED, "B" * 22, 1, COMPLETED, None)
    older = history.encode_entry(STARTED, None, TASK, 0, EXCEPTION, "intermittent-task")
    runs = history.decode_history(newer + "\n" + older)
    assert [(run.task_id, run.reason_resolved) for run in runs] == [("B" * 22, "completed"),
                                                                   (TASK, "intermittent-task")]
    assert history.decode_history(None) == history.decode_history("") == ()


def test_the_format_the_spans_and_the_lua_positions_come_from_one_table():
    entry = history.encode_entry(RESOLVED, STARTED, TASK, 12, NOT_COUNTED, "canceled")
    assert history.HISTORY_ENTRY.count("%") == len(history.FIELDS)
    for name, (first, last) in history.lua_spans().items():
        span = history.SPANS[name]
        # string.sub(entry, first, last) in Lua is entry[first - 1:last] in Python
        assert entry[first - 1:None if last == -1 else last] == entry[span]
    assert entry[history.SPANS["run_id"]] == "0012"
    assert entry[history.SPANS["code"]] == NOT_COUNTED


@pytest.mark.parametrize("reason", ["", "worker-shutdown", "canceled"])
def test_an_entry_written_before_labels_still_decodes(reason):
    # the layout before labels: the reason right after `started`
    new = history.encode_entry(RESOLVED, STARTED, TASK, 3, EXCEPTION, reason or None)
    old = new[:history.SPANS["attribution"].start] + reason
    run = history.decode_entry(old)
    assert run == Run(TASK, 3, "exception", reason or None, format_lastseen(STARTED),
                      format_lastseen(RESOLVED))
    assert run == history.decode_entry(new)[:6] + (None,) * 5


def test_the_batch_script_s_label_fields_decode():
    entry = history.encode_entry(RESOLVED, STARTED, TASK, 3, COMPLETED, None)
    label, median, attribution = (history.SPANS[name] for name in ("label", "peer_median",
                                                                  "attribution"))
    entry = (entry[:attribution.start] + "M" + "0123456789" + f"{123456:010d}"
             + entry[median.stop:])
    run = history.decode_entry(entry)
    assert (run.label, run.attribution, run.peer_median_seconds) == ("0123456789", "machine", 123.456)
