"""The problem rules, one by one and at their boundaries, on plain values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from releng_hardware.core.config import SLOW_MIN_RUNS, WINDOW, Config, settings_table
from releng_hardware.core.problems import PROBLEMS, RULES, MachineFacts, Thresholds, machine_problems
from releng_hardware.core.records import outcome_code, state_of_outcome
from releng_hardware.core.times import format_lastseen
from tests.conftest import NOW

LIMITS = Thresholds()
QUEUE = "releng-hardware/gecko-t-linux-talos"


def facts(outcomes: str = "", *, age: float | None = 60.0, state: str | None = "completed",
          reason: str | None = "completed", time: str | None = None) -> MachineFacts:
    return MachineFacts(age, QUEUE, outcomes, state, reason, time)


def problems(machine: MachineFacts, limits: Thresholds = LIMITS, busy=()) -> list[str]:
    return machine_problems(machine, NOW, limits, busy)


def test_problem_codes_are_the_api_s_sorted_list():
    assert PROBLEMS == ("consecutive_failures", "exceptions", "fails_where_others_pass", "hung_task",
                        "idle_with_work_waiting", "lost_mid_task", "low_success_rate", "never_seen",
                        "not_in_inventory", "slow", "stale")
    assert set(RULES) == set(PROBLEMS)


def test_a_healthy_machine_has_no_problem():
    assert problems(facts("c" * 20)) == []


def test_a_machine_known_only_by_its_lastseen_has_no_history_problem():
    assert problems(MachineFacts(60.0)) == []


@pytest.mark.parametrize("state, reason, code", [
    ("completed", "completed", "c"),
    ("failed", "failed", "f"),
    ("exception", "worker-shutdown", "e"),
    ("exception", "internal-error", "e"),
    ("exception", "something-new", "e"),
    ("exception", "claim-expired", "l"),
    ("exception", "canceled", "x"),
    ("exception", "superseded", "x"),
    ("exception", "deadline-exceeded", "x"),
    ("running", None, "r"),
])
def test_each_run_counts_as_one_outcome(state, reason, code):
    assert outcome_code(state, reason) == code
    assert state_of_outcome(code) == state


# -- stale and idle_with_work_waiting ----------------------------------------------

def test_stale_from_exactly_stale_after():
    assert "stale" in problems(facts(age=LIMITS.stale_after))
    assert "stale" not in problems(facts(age=LIMITS.stale_after - 0.001))
    assert "stale" not in problems(facts(age=None))


def test_idle_with_work_waiting_needs_stale_and_work_for_its_worker_type():
    assert problems(facts(age=LIMITS.stale_after), busy={QUEUE}) == ["idle_with_work_waiting", "stale"]
    assert problems(facts(age=LIMITS.stale_after), busy={"releng-hardware/other"}) == ["stale"]
    assert problems(facts(age=60), busy={QUEUE}) == []


# -- consecutive_failures ----------------------------------------------------------

def test_consecutive_failures_from_failure_streak_failed_or_exception_runs():
    assert "consecutive_failures" in problems(facts("fef" + "c" * 10))
    assert "consecutive_failures" in problems(facts("lll"))
    assert "consecutive_failures" not in problems(facts("ffc" + "f" * 10))
    assert "consecutive_failures" not in problems(facts("ff"))


def test_consecutive_failures_follows_its_threshold():
    assert "consecutive_failures" in problems(facts("ffc"), Thresholds(failure_streak=2))
    assert "consecutive_failures" not in problems(facts("fffc"), Thresholds(failure_streak=4))


def test_runs_the_queue_ended_for_outside_reasons_neither_extend_nor_break_a_streak():
    assert "consecutive_failures" in problems(facts("fxfxxf"))
    assert "consecutive_failures" not in problems(facts("ffxxx"))
    assert "consecutive_failures" not in problems(facts("xxxfcff"))


def test_a_running_newest_run_neither_extends_nor_breaks_a_streak():
    # outcomes hold ended runs only: a run still running is not among them
    assert "consecutive_failures" in problems(facts("fff", state="running", reason=None))
    assert "consecutive_failures" not in problems(facts("ffc", state="running", reason=None))


# -- low_success_rate --------------------------------------------------------------

def test_low_success_rate_below_the_minimum_over_the_newest_twenty():
    assert "low_success_rate" in problems(facts("f" * 4 + "c" * 16))  # 0.80
    assert "low_success_rate" not in problems(facts("f" * 3 + "c" * 17))  # 0.85 is not below
    assert "low_success_rate" not in problems(facts("c" * 20 + "f" * 20))  # older runs are out


def test_low_success_rate_needs_five_completed_or_failed_runs():
    assert "low_success_rate" in problems(facts("ffcff"))
    assert "low_success_rate" not in problems(facts("ffff"))


def test_low_success_rate_ignores_exceptions_and_runs_ended_for_outside_reasons():
    assert "low_success_rate" not in problems(facts("eeexxx" + "c" * 17 + "f" * 3))
    assert "low_success_rate" in problems(facts("xe" + "c" * 16 + "f" * 4))


def test_low_success_rate_follows_its_threshold():
    assert "low_success_rate" in problems(facts("f" + "c" * 19), Thresholds(success_rate_min=0.99))
    assert "low_success_rate" not in problems(facts("ffcff"), Thresholds(success_rate_min=0.0))


# -- exceptions -------------------------------------------------------------------

def test_exceptions_from_exceptions_max_in_the_newest_twenty_counted_runs():
    assert "exceptions" in problems(facts("ece" + "c" * 10 + "l"))
    assert "exceptions" not in problems(facts("ee" + "c" * 20))
    assert "exceptions" not in problems(facts("ee" + "c" * 18 + "e"))  # the third is 21st


def test_exceptions_window_leaves_out_runs_ended_for_outside_reasons():
    # canceled, superseded, deadline-exceeded neither count nor take a place in the 20
    assert "exceptions" in problems(facts("ee" + "x" * 5 + "c" * 17 + "e"))
    assert "exceptions" not in problems(facts("xxx" + "c" * 10))


def test_exceptions_follows_its_threshold():
    assert "exceptions" in problems(facts("e" + "c" * 5), Thresholds(exceptions_max=1))


# -- lost_mid_task and hung_task ----------------------------------------------------

def test_lost_mid_task_when_the_newest_run_ended_claim_expired():
    assert "lost_mid_task" in problems(facts("l", state="exception", reason="claim-expired"))
    assert "lost_mid_task" not in problems(facts("lc", state="completed", reason="completed"))
    assert "lost_mid_task" not in problems(facts("l", state="running", reason=None))


def test_hung_task_when_the_newest_run_runs_longer_than_hung_after():
    started = format_lastseen(NOW - timedelta(seconds=LIMITS.hung_after + 1))
    assert "hung_task" in problems(facts(state="running", reason=None, time=started))
    on_time = format_lastseen(NOW - timedelta(seconds=LIMITS.hung_after))
    assert "hung_task" not in problems(facts(state="running", reason=None, time=on_time))
    assert "hung_task" not in problems(facts(state="completed", time=started))
    assert "hung_task" not in problems(facts(state="running", reason=None, time=None))


def test_hung_task_follows_its_threshold():
    started = format_lastseen(NOW - timedelta(minutes=11))
    assert "hung_task" in problems(facts(state="running", reason=None, time=started),
                                   Thresholds(hung_after=600))


def test_thresholds_come_from_the_settings():
    config = Config.from_environ({"STALE_AFTER": "2h", "FAILURE_STREAK": "5", "SUCCESS_RATE_MIN": "0.5",
                                  "EXCEPTIONS_MAX": "7", "HUNG_AFTER": "90m"})
    assert Thresholds.from_config(config) == Thresholds(7200, 5, 0.5, 7, 5400)
    assert Thresholds.from_config(config, stale_after=60).stale_after == 60
    assert Thresholds.from_config(Config()) == Thresholds()


def test_the_settings_describe_the_window_the_rules_judge():
    docs = {variable: doc for variable, _, doc in settings_table()}
    assert f"newest {WINDOW} completed or failed runs" in docs["SUCCESS_RATE_MIN"]
    assert f"newest {WINDOW} counted runs" in docs["EXCEPTIONS_MAX"]
    exceptions = "e" * LIMITS.exceptions_max
    assert "exceptions" in problems(facts("c" * (WINDOW - len(exceptions)) + exceptions))
    assert "exceptions" not in problems(facts("c" * WINDOW + exceptions))
    failures = "f" * WINDOW
    assert "low_success_rate" in problems(facts(failures + "c" * WINDOW))
    assert "low_success_rate" not in problems(facts("c" * WINDOW + failures))


def test_codes_come_sorted_when_several_apply():
    machine = facts("llleeefffff", age=LIMITS.stale_after, state="exception", reason="claim-expired")
    assert problems(machine, busy={QUEUE}) == ["consecutive_failures", "exceptions",
                                               "idle_with_work_waiting", "lost_mid_task",
                                               "low_success_rate", "stale"]


def attributed(outcomes: str, attributions: str, ratios=(), **kwargs) -> MachineFacts:
    return facts(outcomes, **kwargs)._replace(attributions=attributions, peer_ratios=ratios)


def test_failures_put_down_to_the_task_count_like_runs_not_counted():
    # three failures the task also had elsewhere: no streak, no low rate, no exceptions
    assert problems(attributed("fffc", "TTTN")) == []
    assert problems(attributed("fff" + "c" * 10, "TTT" + "N" * 10)) == []
    assert problems(attributed("eee" + "c" * 5, "TTT" + "N" * 5)) == []
    # the same runs as not counted give the same answers
    for outcomes in ("fffc", "eeecccccc", "fff" + "c" * 10):
        as_task = attributed(outcomes, "T" * 3 + "N" * (len(outcomes) - 3))
        assert problems(as_task) == problems(facts("xxx" + outcomes[3:]))


def test_failures_put_down_to_the_machine_or_to_nothing_count_as_before():
    for attributions in ("NNN", "MMN", ""):
        assert "consecutive_failures" in problems(attributed("fff", attributions))


def test_a_task_failure_neither_extends_nor_breaks_a_streak():
    assert "consecutive_failures" not in problems(attributed("ffcf", "NTNN"))
    assert "consecutive_failures" in problems(attributed("ffffc", "NTNNN"))


def test_fails_where_others_pass_from_failure_streak_machine_failures_in_twenty_counted():
    assert "fails_where_others_pass" in problems(attributed("fcfcl", "MNMNM"))
    assert "fails_where_others_pass" not in problems(attributed("fcfcl", "MNMNN"))
    # beyond the newest 20 counted runs they are not looked at; runs not counted do not count
    assert "fails_where_others_pass" not in problems(attributed("c" * 18 + "fff", "N" * 18 + "MMM"))
    assert "fails_where_others_pass" in problems(attributed("xx" + "c" * 16 + "fff",
                                                            "NN" + "N" * 16 + "MMM"))
    # a task failure is skipped like a run not counted
    assert "fails_where_others_pass" in problems(attributed("f" * 20 + "fff", "T" * 20 + "MMM"))
    assert "fails_where_others_pass" not in problems(
        attributed("fcfcl", "MNMNM"), Thresholds(failure_streak=4))


def test_slow_from_five_ratios_whose_median_reaches_slow_factor():
    assert "slow" in problems(attributed("c" * 5, "", (1.5, 1.6, 2.0, 1.0, 3.0)))
    assert "slow" not in problems(attributed("c" * 5, "", (1.4, 1.6, 2.0, 1.0, 1.0)))
    assert "slow" not in problems(attributed("c" * 4, "", (2.0, 2.0, 2.0, 2.0)))  # four only
    assert "slow" not in problems(attributed("c" * 5, "", (1.5,) * 5), Thresholds(slow_factor=1.6))


def test_slow_needs_slow_min_runs_ratios_as_its_docs_say():
    assert "slow" in problems(attributed("c" * SLOW_MIN_RUNS, "", (2.0,) * SLOW_MIN_RUNS))
    few = SLOW_MIN_RUNS - 1
    assert "slow" not in problems(attributed("c" * few, "", (2.0,) * few))
    docs = {variable: doc for variable, _, doc in settings_table()}
    assert f"at least {SLOW_MIN_RUNS} of its newest {WINDOW}" in docs["SLOW_FACTOR"]



def test_without_labels_every_answer_is_what_it_was():
    # no attribution and no ratio: every outcome string is judged as the rules always did
    for outcomes in ("fff", "fcfcfcfcfc", "eeec", "lcc", "xfff", "c" * 20, "ffcff" * 4):
        answer = problems(facts(outcomes))
        assert "fails_where_others_pass" not in answer and "slow" not in answer
        assert problems(attributed(outcomes, "N" * len(outcomes))) == answer
