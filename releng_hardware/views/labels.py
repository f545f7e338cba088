"""The task labels failing on several machines: the rule /labels, the dashboard and /metrics share.

What is broken in the task, not in the machines: for the people who sheriff the tree. Pure:
the store's runs per label go in, the labels as served come out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from ..core.identifiers import task_url
from ..core.records import COMPLETED
from ..core.times import epoch_milliseconds, format_lastseen, from_epoch_milliseconds
from ..store.peers import FAILING, PeerRun

# Each label's fields, in this order (JSON and CSV alike; worker_types joined by spaces in CSV).
LABEL_FIELDS = ("label", "worker_types", "machines_failed", "machines_completed", "failed_runs",
                "completed_runs", "last_failure", "last_failure_url")


def failing_labels(stored: Iterable[tuple[str, Sequence[PeerRun]]], now: datetime, window: float,
                   root_url: str, *, min_machines: int,
                   worker_type: str | None = None) -> list[dict[str, Any]]:
    """The labels failing on at least `min_machines` distinct machines within `window` seconds
    before `now` (of `worker_type`'s runs only, when given): most machines first, then by label."""
    since = epoch_milliseconds(now - timedelta(seconds=window))
    found: list[dict[str, Any]] = []
    for name, runs in stored:
        recent = [run for run in runs if run.time_ms >= since
                  and (worker_type is None or run.worker_type == worker_type)]
        failures = [run for run in recent if run.code in FAILING]
        failed = {run.machine_id for run in failures}
        if len(failed) < min_machines:
            continue
        completions = [run for run in recent if run.code == COMPLETED]
        last = max(failures, key=lambda run: run.time_ms)
        found.append({
            "label": name,
            "worker_types": sorted({run.worker_type for run in recent}),
            "machines_failed": len(failed),
            "machines_completed": len({run.machine_id for run in completions}),
            "failed_runs": len(failures),
            "completed_runs": len(completions),
            "last_failure": format_lastseen(from_epoch_milliseconds(last.time_ms)),
            "last_failure_url": task_url(root_url, last.task_id, last.run_id),
        })
    found.sort(key=lambda label: (-label["machines_failed"], label["label"]))
    return found


def default_min_machines(peer_failures: int) -> int:
    """The bar a label must reach when none is asked: more than PEER_FAILURES machines."""
    return peer_failures + 1
