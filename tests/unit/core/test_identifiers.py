"""The names built of Taskcluster identifiers: a queue, a task's link."""

from __future__ import annotations

from releng_hardware.core.identifiers import queue_id, task_url
from releng_hardware.core.problems import facts_of
from releng_hardware.core.records import MachineRecord


def test_a_queue_is_provisioner_slash_worker_type():
    assert queue_id("releng-hardware", "gecko-t-linux-talos") == "releng-hardware/gecko-t-linux-talos"


def test_a_missing_part_of_a_queue_is_written_none_as_the_facts_always_named_it():
    assert queue_id(None, None) == "None/None"
    assert facts_of(MachineRecord("mdc1:host", None, {}), None, None).queue == "None/None"
    assert facts_of(MachineRecord("mdc1:host", None, {"provisioner": "p", "worker_type": "w"}),
                    None, None).queue == queue_id("p", "w")


def test_a_task_link_and_a_run_link():
    root = "https://tc.example"
    assert task_url(root, "AAAAAAAAQAGAAAAAAAAAAA") == "https://tc.example/tasks/AAAAAAAAQAGAAAAAAAAAAA"
    assert task_url(root, "AAAAAAAAQAGAAAAAAAAAAA", 0) == (
        "https://tc.example/tasks/AAAAAAAAQAGAAAAAAAAAAA/runs/0")
