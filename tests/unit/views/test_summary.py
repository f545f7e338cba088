"""/summary: one answer (fleet.summary_answer), whether counted from every machine
(fleet.summary) or from the machine index's figures (machine_index.summary_from_index)."""

from __future__ import annotations

import pytest

from releng_hardware.core.events import PendingEvent
from releng_hardware.core.problems import PROBLEMS
from releng_hardware.views.fleet import SUMMARY_COUNTS, GroupCounts, counted_json, summary, summary_answer
from releng_hardware.views.reads import read_fleet, read_summary
from tests.conftest import DEADLINE, NOW, make_config, record_every_shape


def from_every_machine(store, config, stale_after=None):
    fleet = read_fleet(store, config, NOW, stale_after, view=counted_json)
    return summary(fleet.machines + fleet.never_seen, fleet.pending,
                   config.stale_after if stale_after is None else stale_after, fleet.inventory)


@pytest.mark.parametrize("stale_after", [None, 60.0])
def test_the_index_and_every_machine_give_the_same_summary(store, stale_after):
    record_every_shape(store)
    config = make_config()
    assert read_summary(store, config, NOW, stale_after) == from_every_machine(store, config, stale_after)


def test_machines_without_a_queue_count_alike_on_both_paths_even_with_work_on_none_none(store):
    # a preloaded or legacy machine has no provisioner or worker type: its facts name its queue
    # "None/None", its /summary group looks up "/" for the work waiting
    record_every_shape(store)
    store.record([PendingEvent("None", "None", "FFFFFFFFQAGAAAAAAAAAAA", 0, NOW, DEADLINE)], now=NOW)
    config = make_config()
    served = read_summary(store, config, NOW, 60.0)
    assert served == from_every_machine(store, config, 60.0)
    no_queue = [group for group in served["groups"]
                if group["datacenter"] == "mdc3" and group["provisioner"] is None]
    assert len(no_queue) == 1
    assert no_queue[0]["idle_with_work_waiting"] == no_queue[0]["stale"] == 2
    assert no_queue[0]["pending_tasks"] == 0
    assert served["pending_tasks"]["None/None"] == 1


def test_the_answer_has_one_shape_in_one_order():
    counted = GroupCounts()
    counted.counts.update(total=2, stale=1)
    counted.problems["stale"] = 1
    answer = summary_answer({("mdc1", "", "spare"): counted, ("mdc1", "p", "w"): GroupCounts()},
                            {"p/w": 3}, 3600.0)
    assert list(answer) == ["stale_after_seconds", "totals", "groups", "pending_tasks"]
    first, second = answer["groups"]
    assert list(first) == ["datacenter", "worker_type", "provisioner", *SUMMARY_COUNTS,
                           "pending_tasks", "problems"]
    assert (first["provisioner"], first["worker_type"], first["total"]) == (None, "spare", 2)
    assert list(first["problems"]) == list(PROBLEMS)
    assert second["pending_tasks"] == 3
    assert answer["totals"]["total"] == 2 and answer["totals"]["problems"]["stale"] == 1
