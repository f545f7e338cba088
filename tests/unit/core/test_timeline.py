"""The machine event log's pure core: each kind and its time, the replay of runs, identity,
validation, quarantines and retention, on plain values."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from releng_hardware.core import timeline
from releng_hardware.core.problems import Thresholds
from releng_hardware.core.records import Run
from releng_hardware.core.timeline import (EVENT_KINDS, QuarantineState, decode_event, encode_event,
                                           event_corruption, event_id, problems_since,
                                           quarantine_detail_events, quarantine_events,
                                           reattributed_ends, retained, run_problem_events)
from releng_hardware.core.times import format_lastseen
from tests.conftest import NOW

LIMITS = Thresholds()
MACHINE = "mdc1:t-linux64-ms-001"
ROOT_URL = "https://tc.example.com"
T0 = NOW - timedelta(days=1)
_REASONS = {"completed": "completed", "failed": "failed", "running": None}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ts(minutes: float) -> str:
    return format_lastseen(at(minutes))


def task(n: int) -> str:
    return f"task{n:018d}"  # 22 characters, as a slugid


def run(n: int, state: str, start: float, minutes: float = 10, *, reason: str | None = None,
        attribution: str | None = None, label: str | None = "test-linux/opt-mochitest-1",
        peer_median: float | None = None, peers: dict[str, int] | None = None, run_id: int = 0) -> Run:
    """A run of task n starting `start` minutes after T0 and ending `minutes` later."""
    resolved = None if state == "running" else ts(start + minutes)
    return Run(task(n), run_id, state, reason or _REASONS.get(state), ts(start), resolved, label,
               attribution, peer_median,
               minutes * 60.0 if state == "completed" else None, peers)


def newest_first(runs: list[Run]) -> list[Run]:
    """Runs as store.history holds them: one per (task_id, run_id), a resolution replacing the
    start, newest first by time with an end after a start at the same instant."""
    kept: dict[tuple[str, int], Run] = {}
    for item in runs:
        key = (item.task_id, item.run_id)
        if key not in kept or (kept[key].state == "running" and item.state != "running"):
            kept[key] = item

    def order(item: Run) -> tuple[str, bool, str, int]:
        ended = item.state != "running"
        return (item.resolved if ended else item.started) or "", ended, item.task_id, item.run_id

    return sorted(kept.values(), key=order, reverse=True)


def kinds(events: list[Any]) -> list[tuple[str, str | None, str]]:
    return [(event["kind"], event.get("problem"), event["time"]) for event in events]


def round_trips(event: Any) -> bool:
    return decode_event(encode_event(event)) == event


# -- kinds ---------------------------------------------------------------------------

def test_every_kind_is_listed_once():
    assert len(set(EVENT_KINDS)) == len(EVENT_KINDS) == 10
    assert {"first_seen", "problem_started", "problem_ended", "quarantined", "quarantine_changed",
            "quarantine_ended", "inventory_added", "inventory_removed", "backfilled",
            "seen_again"} == set(EVENT_KINDS)


def test_simple_kinds_happen_at_the_time_given_in_the_lastseen_format():
    events = [timeline.first_seen(MACHINE, at(1)), timeline.inventory_event(MACHINE, True, at(2)),
              timeline.inventory_event(MACHINE, False, "2026-11-19T15:03:00Z"),
              timeline.backfilled(MACHINE, at(4), at(-60))]
    assert kinds(events) == [("first_seen", None, ts(1)), ("inventory_added", None, ts(2)),
                             ("inventory_removed", None, ts(3)), ("backfilled", None, ts(4))]
    assert events[3]["lastseen"] == ts(-60)
    assert all(event["machine"] == MACHINE and round_trips(event) for event in events)


# -- problems replayed from runs -----------------------------------------------------

def test_consecutive_failures_start_at_the_third_failure_and_end_at_the_next_completion():
    runs = newest_first([run(1, "completed", 0), run(2, "failed", 20), run(3, "failed", 40),
                         run(4, "failed", 60), run(5, "completed", 80)])
    # low_success_rate left out: 2 completed of 5 would start it with the same run
    events = run_problem_events(MACHINE, runs, Thresholds(success_rate_min=0), ROOT_URL)
    assert kinds(events) == [("problem_started", "consecutive_failures", ts(70)),
                             ("problem_ended", "consecutive_failures", ts(90))]
    started, ended = events
    assert (started["task_id"], started["run_id"], started["label"]) == (task(4), 0,
                                                                         "test-linux/opt-mochitest-1")
    assert started["url"] == f"{ROOT_URL}/tasks/{task(4)}/runs/0"
    assert ended["task_id"] == task(5)
    assert all(round_trips(event) for event in events)


def test_lost_mid_task_starts_at_the_resolution_and_ends_when_the_next_run_starts():
    runs = newest_first([run(1, "exception", 0, reason="claim-expired"), run(2, "running", 30)])
    events = run_problem_events(MACHINE, runs, LIMITS, ROOT_URL)
    assert kinds(events) == [("problem_started", "lost_mid_task", ts(10)),
                             ("problem_ended", "lost_mid_task", ts(30))]
    assert events[1]["task_id"] == task(2)


def test_exceptions_start_at_the_exceptions_max_th_exception_among_completions():
    runs = newest_first([run(1, "exception", 0, reason="worker-shutdown"), run(2, "completed", 20),
                         run(3, "exception", 40, reason="internal-error"), run(4, "completed", 60),
                         run(5, "exception", 80, reason="worker-shutdown")])
    events = run_problem_events(MACHINE, runs, LIMITS, ROOT_URL)
    assert kinds(events) == [("problem_started", "exceptions", ts(90))]


def test_not_counted_runs_neither_start_nor_end_a_problem():
    runs = newest_first([run(1, "failed", 0), run(2, "failed", 20), run(3, "failed", 40),
                         run(4, "exception", 60, reason="canceled")])
    events = run_problem_events(MACHINE, runs, LIMITS, ROOT_URL)
    assert kinds(events) == [("problem_started", "consecutive_failures", ts(50))]


def test_low_success_rate_starts_when_the_rate_falls_below_the_minimum():
    limits = Thresholds(success_rate_min=0.75, failure_streak=10)
    runs = [run(n, "completed", n * 20) for n in range(1, 4)] + [run(4, "failed", 80),
                                                                  run(5, "failed", 100)]
    events = run_problem_events(MACHINE, newest_first(runs), limits, ROOT_URL)
    # after run 4: 3 of 4 completed (under 5 runs, not judged); after run 5: 3 of 5
    assert kinds(events) == [("problem_started", "low_success_rate", ts(110))]


def test_fails_where_others_pass_carries_how_many_machines_passed_the_label():
    runs = newest_first([run(n, "failed", n * 20, attribution="machine",
                             peers={"failed": 0, "completed": 4}) for n in range(1, 4)])
    events = [event for event in run_problem_events(MACHINE, runs, LIMITS, ROOT_URL)
              if event["problem"] == "fails_where_others_pass"]
    assert kinds(events) == [("problem_started", "fails_where_others_pass", ts(70))]
    assert events[0]["peers"] == 4
    assert round_trips(events[0])


def test_slow_starts_at_the_fifth_run_at_slow_factor_over_its_peers():
    # 20-minute runs where the label's peers take 10: a ratio of 2
    runs = newest_first([run(n, "completed", n * 30, 20, peer_median=600.0) for n in range(1, 7)])
    events = run_problem_events(MACHINE, runs, LIMITS, ROOT_URL)
    assert kinds(events) == [("problem_started", "slow", ts(5 * 30 + 20))]


def test_a_healthy_history_has_no_problem_event():
    runs = newest_first([run(n, "completed", n * 20) for n in range(1, 25)])
    assert run_problem_events(MACHINE, runs, LIMITS, ROOT_URL) == []
    assert run_problem_events(MACHINE, [], LIMITS, ROOT_URL) == []


def _mixed_history() -> list[Run]:
    runs: list[Run] = []
    for n in range(1, 40):
        state = random.Random(n).choice(["completed", "failed", "failed", "exception"])
        reason = random.Random(-n).choice(["claim-expired", "worker-shutdown", "canceled"])
        runs.append(run(n, state, n * 15, 10, reason=reason if state == "exception" else None,
                        attribution="machine" if state == "failed" and n % 2 else None,
                        peers={"failed": 1, "completed": n % 5} if state == "failed" else None,
                        peer_median=400.0 if state == "completed" and n % 3 else None))
    # two runs that share an instant: a resolution and a start
    runs.append(run(40, "completed", 40 * 15))
    runs.append(run(41, "failed", 40 * 15 + 10))
    runs.append(run(42, "running", 700))
    return runs


def test_shuffled_and_duplicated_runs_give_the_same_events():
    history = _mixed_history()
    expected = run_problem_events(MACHINE, newest_first(history), LIMITS, ROOT_URL)
    assert len(expected) >= 6  # the history is not trivially healthy
    # redeliveries, and the start message of every ended run beside its resolution
    starts = [item._replace(state="running", reason_resolved=None, resolved=None,
                            duration_seconds=None) for item in history]
    for seed in range(5):
        delivered = history + history[::3] + starts
        random.Random(seed).shuffle(delivered)
        assert run_problem_events(MACHINE, delivered, LIMITS, ROOT_URL) == expected
        assert run_problem_events(MACHINE, newest_first(delivered), LIMITS, ROOT_URL) == expected


def test_the_same_runs_give_the_same_event_ids():
    history = _mixed_history()
    first = [event_id(event) for event in run_problem_events(MACHINE, history, LIMITS, ROOT_URL)]
    again = [event_id(event) for event in run_problem_events(MACHINE, history[::-1], LIMITS, ROOT_URL)]
    assert first == again
    assert len(set(first)) == len(first)


def test_problems_since_gives_each_open_problem_with_its_start_in_any_order():
    runs = newest_first([run(1, "failed", 0), run(2, "failed", 20), run(3, "failed", 40),
                         run(4, "exception", 60, reason="claim-expired")])
    events = run_problem_events(MACHINE, runs, LIMITS, ROOT_URL)
    expected = {"consecutive_failures": ts(50), "lost_mid_task": ts(70)}
    assert problems_since(events) == expected
    assert problems_since(events[::-1]) == expected
    ended = events + [timeline.problem_event(MACHINE, False, "lost_mid_task", at(80))]
    assert problems_since(ended) == {"consecutive_failures": ts(50)}


def test_failures_later_put_down_to_the_task_end_their_problems_at_the_evidence():
    before = newest_first([run(n, "failed", n * 20, attribution="machine",
                               peers={"failed": 0, "completed": 2}) for n in range(1, 4)])
    now = [item._replace(attribution="task") for item in before]
    open_before = problems_since(run_problem_events(MACHINE, before, LIMITS, ROOT_URL))
    open_now = problems_since(run_problem_events(MACHINE, now, LIMITS, ROOT_URL))
    assert set(open_before) == {"consecutive_failures", "fails_where_others_pass"}
    assert open_now == {}
    ends = reattributed_ends(MACHINE, open_before, open_now, at(200))
    assert kinds(ends) == [("problem_ended", "consecutive_failures", ts(200)),
                           ("problem_ended", "fails_where_others_pass", ts(200))]
    assert all(event["reason"] == "re-attributed" and round_trips(event) for event in ends)
    stored = run_problem_events(MACHINE, before, LIMITS, ROOT_URL) + ends
    assert problems_since(stored) == {}


def test_a_problem_still_open_after_re_attribution_does_not_end():
    open_before = {"consecutive_failures": ts(10), "slow": ts(5)}
    ends = reattributed_ends(MACHINE, open_before, {"slow": ts(5)}, at(20))
    assert kinds(ends) == [("problem_ended", "consecutive_failures", ts(20))]


# -- problems of time ----------------------------------------------------------------

def test_stale_and_hung_start_their_threshold_after_the_instant():
    assert timeline.stale_since(ts(0), LIMITS) == format_lastseen(at(0) + timedelta(hours=6))
    assert timeline.hung_since(ts(0), LIMITS) == format_lastseen(at(0) + timedelta(hours=3))


def test_idle_with_work_waiting_starts_at_the_later_of_stale_and_the_work_waiting():
    stale = timeline.stale_since(ts(0), LIMITS)
    assert timeline.idle_with_work_waiting_since(ts(0), ts(10), LIMITS) == stale
    assert timeline.idle_with_work_waiting_since(ts(0), ts(600), LIMITS) == ts(600)


def test_seen_again_only_after_being_stale():
    assert timeline.seen_again(MACHINE, ts(0), at(359), LIMITS) is None
    event = timeline.seen_again(MACHINE, ts(0), at(360), LIMITS)
    assert event is not None
    assert kinds([event]) == [("seen_again", None, ts(360))]
    assert event["after_seconds"] == 21600.0
    assert round_trips(event)


# -- identity and encoding -----------------------------------------------------------

def test_an_event_built_twice_has_the_same_id_and_bytes():
    one = timeline.problem_event(MACHINE, True, "slow", at(5), run(1, "completed", 0), ROOT_URL)
    two = dict(reversed(list(
        timeline.problem_event(MACHINE, True, "slow", at(5), run(1, "completed", 0), ROOT_URL).items())))
    assert event_id(one) == event_id(two)
    assert len(event_id(one)) == timeline.EVENT_ID_LENGTH
    assert encode_event(one) == encode_event(two)
    assert b" " not in encode_event(timeline.first_seen(MACHINE, at(0)))


def test_events_differing_in_time_kind_problem_or_run_have_different_ids():
    base = timeline.problem_event(MACHINE, True, "slow", at(5), run(1, "completed", 0), ROOT_URL)
    variants = [
        timeline.problem_event(MACHINE, True, "slow", at(6), run(1, "completed", 0), ROOT_URL),
        timeline.problem_event(MACHINE, False, "slow", at(5), run(1, "completed", 0), ROOT_URL),
        timeline.problem_event(MACHINE, True, "exceptions", at(5), run(1, "completed", 0), ROOT_URL),
        timeline.problem_event(MACHINE, True, "slow", at(5), run(2, "completed", 0), ROOT_URL),
        timeline.problem_event("mdc2:t-linux64-ms-001", True, "slow", at(5), run(1, "completed", 0)),
    ]
    assert len({event_id(event) for event in [base, *variants]}) == 6


# -- corrupt entries -----------------------------------------------------------------

GOOD = {"time": "2026-11-19T15:00:00.000000", "kind": "problem_started", "machine": MACHINE,
        "problem": "slow", "task_id": task(1), "run_id": 0, "label": None,
        "url": f"{ROOT_URL}/tasks/{task(1)}/runs/0"}


def test_a_valid_entry_decodes_to_itself():
    assert decode_event(orjson.dumps(GOOD)) == GOOD
    assert event_corruption(orjson.dumps(GOOD)) is None


@pytest.mark.parametrize("raw, why", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (orjson.dumps({**GOOD, "kind": "problem_paused"}), "unknown kind"),
    (orjson.dumps({**GOOD, "time": "2026-11-19T15:00:00Z"}), "time"),
    (orjson.dumps({**GOOD, "time": "2026-13-19T15:00:00.000000"}), "time"),
    (orjson.dumps({**GOOD, "machine": "t-linux64-ms-001"}), "machine"),
    (orjson.dumps({key: value for key, value in GOOD.items() if key != "problem"}), "without problem"),
    (orjson.dumps({**GOOD, "problem": "sad"}), "bad problem"),
    (orjson.dumps({**GOOD, "run_id": "0"}), "bad run_id"),
    (orjson.dumps({**GOOD, "run_id": True}), "bad run_id"),
    (orjson.dumps({**GOOD, "peers": 1.5}), "bad peers"),
    (orjson.dumps({**GOOD, "task_id": "no/slugid"}), "bad task_id"),
    (orjson.dumps({"time": GOOD["time"], "kind": "seen_again", "machine": MACHINE,
                   "after_seconds": "60"}), "bad after_seconds"),
    (orjson.dumps({"time": GOOD["time"], "kind": "quarantine_ended", "machine": MACHINE,
                   "how": "forgotten"}), "bad how"),
    (orjson.dumps({"time": GOOD["time"], "kind": "quarantined", "machine": MACHINE,
                   "until": GOOD["time"], "reason": 3, "by": None}), "bad reason"),
    (orjson.dumps({"time": GOOD["time"], "kind": "quarantined", "machine": MACHINE,
                   "until": GOOD["time"], "reason": None}), "without by"),
    (orjson.dumps({"time": GOOD["time"], "kind": "backfilled", "machine": MACHINE,
                   "lastseen": 1700000000}), "bad lastseen"),
])
def test_a_corrupt_entry_decodes_to_none_with_its_reason(raw, why):
    assert decode_event(raw) is None
    reason = event_corruption(raw)
    assert reason is not None and why in reason


def test_fields_a_newer_release_added_are_kept():
    raw = orjson.dumps({**GOOD, "severity": "high"})
    decoded = decode_event(raw)
    assert decoded is not None and decoded.get("severity") == "high"


# -- quarantines ---------------------------------------------------------------------

def q(until: float, reason: str | None = "flaky disk", by: str | None = "mozilla-auth0/ad|jdoe",
      updated: float | None = None) -> QuarantineState:
    return QuarantineState(at(until), reason, by, None if updated is None else at(updated))


def test_a_new_quarantine_is_quarantined_at_its_update():
    events = quarantine_events(MACHINE, None, q(600, updated=5), at(10))
    assert kinds(events) == [("quarantined", None, ts(5))]
    assert (events[0]["until"], events[0]["reason"], events[0]["by"]) == (
        ts(600), "flaky disk", "mozilla-auth0/ad|jdoe")
    assert round_trips(events[0])


def test_a_changed_reason_or_until_is_a_quarantine_change_and_no_change_is_none():
    before = q(600, updated=5)
    assert kinds(quarantine_events(MACHINE, before, q(900, updated=20), at(30))) == [
        ("quarantine_changed", None, ts(20))]
    assert kinds(quarantine_events(MACHINE, before, q(600, "new disk", updated=20), at(30))) == [
        ("quarantine_changed", None, ts(20))]
    assert quarantine_events(MACHINE, before, before, at(30)) == []


def test_a_quarantine_gone_before_its_until_was_lifted_and_one_past_it_expired():
    before = q(600, updated=5)
    lifted = quarantine_events(MACHINE, before, None, at(30))
    assert kinds(lifted) == [("quarantine_ended", None, ts(30))] and lifted[0]["how"] == "lifted"
    expired = quarantine_events(MACHINE, before, None, at(700))
    assert kinds(expired) == [("quarantine_ended", None, ts(600))] and expired[0]["how"] == "expired"
    # unchanged in Taskcluster, its time ran out
    assert [event["how"] for event in quarantine_events(MACHINE, before, before, at(700))] == ["expired"]


def test_the_caller_may_say_how_a_quarantine_ended():
    events = quarantine_events(MACHINE, q(600, updated=5), None, at(700), how="lifted")
    assert kinds(events) == [("quarantine_ended", None, ts(700))] and events[0]["how"] == "lifted"


def test_a_quarantine_after_one_that_expired_ends_the_old_one_first():
    events = quarantine_events(MACHINE, q(60, updated=5), q(900, updated=100), at(120))
    assert kinds(events) == [("quarantine_ended", None, ts(60)), ("quarantined", None, ts(100))]
    assert events[0]["how"] == "expired"


def tc(minutes: float) -> str:
    return ts(minutes)[:23] + "Z"


def detail(updated: float, until: float, info: str = "flaky disk",
           client: str = "mozilla-auth0/ad|jdoe") -> dict[str, str]:
    return {"clientId": client, "updatedAt": tc(updated), "quarantineUntil": tc(until),
            "quarantineInfo": info}


def test_quarantine_details_become_events_in_time_order_once_each():
    details = [detail(50, 40, "fixed", "mozilla-auth0/ad|asmith"), detail(0, 600),
               detail(20, 900, "still flaky"), detail(0, 600)]
    events = quarantine_detail_events(MACHINE, details)
    assert kinds(events) == [("quarantined", None, ts(0)), ("quarantine_changed", None, ts(20)),
                             ("quarantine_ended", None, ts(50))]
    assert events[0]["by"] == "mozilla-auth0/ad|jdoe" and events[1]["reason"] == "still flaky"
    assert events[1]["until"] == ts(900)
    assert events[2]["how"] == "lifted" and events[2]["by"] == "mozilla-auth0/ad|asmith"
    assert all(round_trips(event) for event in events)
    assert quarantine_detail_events(MACHINE, details[::-1]) == events


def test_a_quarantine_detail_past_its_until_expired_before_the_next():
    details = [detail(0, 60), detail(100, 400, "again")]
    events = quarantine_detail_events(MACHINE, details, now=at(500))
    assert kinds(events) == [("quarantined", None, ts(0)), ("quarantine_ended", None, ts(60)),
                             ("quarantined", None, ts(100)), ("quarantine_ended", None, ts(400))]
    assert [event.get("how") for event in events] == [None, "expired", None, "expired"]
    # before its until, the last one is still in force
    assert len(quarantine_detail_events(MACHINE, details, now=at(300))) == 3


def test_a_quarantine_detail_without_valid_times_is_skipped():
    details = [{"clientId": "x", "updatedAt": "yesterday", "quarantineUntil": tc(60)},
               {"clientId": "x", "quarantineUntil": tc(60)}, detail(0, 60)]
    assert kinds(quarantine_detail_events(MACHINE, details)) == [("quarantined", None, ts(0))]


# -- retention -----------------------------------------------------------------------

def test_retention_keeps_the_newest_events_younger_than_the_retention():
    events = [timeline.first_seen(MACHINE, NOW - timedelta(days=days)) for days in (1, 30, 89, 91)]
    kept = retained(events, NOW)
    assert [event["time"] for event in kept] == [event["time"] for event in events[:3]]
    assert retained(events[::-1], NOW) == kept


def test_retention_caps_each_machine_at_the_maximum_newest_first():
    events = [timeline.first_seen(MACHINE, NOW - timedelta(minutes=n)) for n in range(600)]
    kept = retained(events, NOW)
    assert len(kept) == timeline.EVENT_MAX == 500
    assert kept == events[:500]
    assert retained(events, NOW, max_per_machine=2) == events[:2]


def test_a_retention_or_maximum_of_zero_keeps_none():
    events = [timeline.first_seen(MACHINE, NOW + timedelta(minutes=1)), timeline.first_seen(MACHINE, NOW)]
    assert retained(events, NOW, retention_seconds=0) == []
    assert retained(events, NOW, max_per_machine=0) == []
