"""The names of /metrics' families: what the exposition serves and /openapi.json describes.

Dashboards and alerts query these names; they are defined here once, below both blueprints.
"""

from __future__ import annotations

MACHINES = "releng_hardware_machines"
MACHINES_STALE = "releng_hardware_machines_stale"
MACHINES_IDLE_WITH_WORK_WAITING = "releng_hardware_machines_idle_with_work_waiting"
MACHINE_PROBLEMS = "releng_hardware_machine_problems"
MACHINES_QUARANTINED = "releng_hardware_machines_quarantined"
STALE_AFTER_SECONDS = "releng_hardware_stale_after_seconds"
PENDING_TASKS = "releng_hardware_pending_tasks"
LABELS_FAILING = "releng_hardware_labels_failing_on_several_machines"
LISTENER_MESSAGES = "releng_hardware_listener_messages"
# a counter's samples are exposed under its name with _total
LISTENER_MESSAGES_TOTAL = f"{LISTENER_MESSAGES}_total"
LISTENER_LAG_SECONDS = "releng_hardware_listener_lag_seconds"
LISTENER_HEARTBEAT_AGE_SECONDS = "releng_hardware_listener_heartbeat_age_seconds"
TASKCLUSTER_POLL_AGE_SECONDS = "releng_hardware_taskcluster_last_good_poll_age_seconds"
TASKCLUSTER_POLLS = "releng_hardware_taskcluster_polls"
TASKCLUSTER_POLLS_TOTAL = f"{TASKCLUSTER_POLLS}_total"
# The outcomes of a Taskcluster poll, as the polls counter labels them.
TASKCLUSTER_POLL_OUTCOMES = ("good", "failed")
# Every family as the exposition names its samples, in the order a scrape yields them.
EXPOSED_FAMILIES = (MACHINES, MACHINES_STALE, MACHINES_IDLE_WITH_WORK_WAITING, MACHINE_PROBLEMS,
                    MACHINES_QUARANTINED, STALE_AFTER_SECONDS, PENDING_TASKS, LABELS_FAILING,
                    LISTENER_MESSAGES_TOTAL, LISTENER_LAG_SECONDS, LISTENER_HEARTBEAT_AGE_SECONDS,
                    TASKCLUSTER_POLLS_TOTAL, TASKCLUSTER_POLL_AGE_SECONDS)
