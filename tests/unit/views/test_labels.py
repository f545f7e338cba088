"""views.labels: the labels failing on several machines, the rule /labels, the dashboard and
/metrics share (pure: runs in, labels out)."""

from __future__ import annotations

from datetime import timedelta

from releng_hardware.core.records import COMPLETED, FAILED
from releng_hardware.core.times import epoch_milliseconds
from releng_hardware.store.peers import PeerRun
from releng_hardware.views.labels import LABEL_FIELDS, default_min_machines, failing_labels
from tests.conftest import NOW

ROOT = "https://tc.example"


def run(minutes_ago: float, code: str, machine: str, task: str = "AAAAAAAAQAGAAAAAAAAAAA",
        worker_type: str = "gecko-t-linux-talos") -> PeerRun:
    return PeerRun(epoch_milliseconds(NOW - timedelta(minutes=minutes_ago)), code, 60_000, task, 0,
                   machine, worker_type)


def test_a_label_failing_on_enough_machines_within_the_window_is_listed_with_its_fields():
    runs = [run(10, FAILED, "mdc1:a", "TASKAAAAQAGAAAAAAAAAAA"), run(20, FAILED, "mdc1:b"),
            run(30, COMPLETED, "mdc1:c"), run(2 * 24 * 60, FAILED, "mdc1:d")]  # the last too old
    found = failing_labels([("bad", runs), ("fine", runs[2:])], NOW, 24 * 3600.0, ROOT,
                           min_machines=2)
    assert [label["label"] for label in found] == ["bad"]
    assert tuple(found[0]) == LABEL_FIELDS
    assert (found[0]["machines_failed"], found[0]["machines_completed"]) == (2, 1)
    assert found[0]["last_failure_url"] == f"{ROOT}/tasks/TASKAAAAQAGAAAAAAAAAAA/runs/0"
    assert failing_labels([("bad", runs)], NOW, 24 * 3600.0, ROOT, min_machines=3) == []
    assert failing_labels([("bad", runs)], NOW, 24 * 3600.0, ROOT, min_machines=2,
                          worker_type="other") == []


def test_the_default_bar_is_more_than_peer_failures_machines():
    assert default_min_machines(2) == 3
