"""A machine's view (its answer without what time changes) spliced back at `now`: the bytes of
machine_json's answer, whatever its strings hold."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest

from releng_hardware.views.fleet import machine_json, machine_view_parts
from releng_hardware.core.problems import Thresholds
from releng_hardware.core.records import MachineRecord, Quarantine
from releng_hardware.views.machine_index import judge_with_view, machines_from_views

NOW = datetime(2026, 11, 20, 18, 0, 0)
ROOT = "https://tc.example.com"


def records() -> list[MachineRecord]:
    running = format_time(NOW - timedelta(hours=4))
    return [
        # a NUL, a quote and non-ASCII in its strings: escaped by orjson, never taken for a cut
        MachineRecord("mdc1:t-odd", format_time(NOW - timedelta(hours=8)), {
            "worker_type": "w\x00t \"\u00e9\u4e2d", "provisioner": "p", "task_id": "T\x00",
            "state": "running", "task_time": running, "outcomes": "FFFFF", "source": "\x00"}),
        MachineRecord("mdc2:t-odd", "2026-11-20 17:00:00Z", {"state": "completed"}),  # hand-made
        MachineRecord("mdc1:t-plain", format_time(NOW - timedelta(seconds=42.5)), {}),
        MachineRecord("mdc1:t-garbage", "not a time", {"worker_type": "w"}),
    ]


def format_time(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


@pytest.mark.parametrize("inventory", [None, {"mdc1:t-plain"}])
def test_a_spliced_answer_is_machine_json_encoded(inventory):
    limits = Thresholds()
    busy = {"p/w\x00t \"\u00e9\u4e2d"}
    quarantine = Quarantine(format_time(NOW + timedelta(days=1)), "r\x00\u00e9", None, "p/w")
    quarantines = {"mdc2:t-odd": quarantine}
    views, judgements, lastseen = {}, {}, {}
    for record in records():
        judgements[record.machine_id], views[record.machine_id] = judge_with_view(record, limits,
                                                                                  ROOT)
        lastseen[record.machine_id] = record.lastseen
    answer = machines_from_views(lastseen, views, judgements, NOW, limits, busy, inventory,
                                 quarantines)
    expected = [machine_json(record, NOW, ROOT, busy, limits,
                             in_inventory=None if inventory is None else record.machine_id in inventory,
                             quarantine=quarantines.get(record.machine_id))
                for record in sorted(records(), key=lambda r: r.machine_id.split(":")[::-1])]
    assert answer is not None
    assert answer.body == orjson.dumps(expected)
    assert answer.problems == [tuple(machine["problems"]) for machine in expected]
    assert {"hung_task", "stale", "idle_with_work_waiting", "consecutive_failures"} <= set(
        answer.problems[1])


def test_a_machine_without_a_view_is_not_spliced():
    record = records()[2]
    judgement, view = judge_with_view(record, Thresholds(), ROOT)
    assert machines_from_views({record.machine_id: record.lastseen}, {},
                               {record.machine_id: judgement}, NOW, Thresholds(), (), None,
                               {}) is None
    assert view is not None and machine_view_parts(record, ROOT).head.startswith(b'{"id":')
