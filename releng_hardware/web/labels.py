"""GET /labels: the task labels failing on several machines within PEER_WINDOW, as JSON or CSV.

What is broken in the task, not in the machines: for the people who sheriff the tree.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

import orjson
from flask import Blueprint, Response

from .api import _wants_csv
from .appstate import app_state
from ..core.params import identifier_param, optional_param, positive_int_param
from ..store.peers import FAILING, PeerRun
from ..core.records import COMPLETED
from .responses import conditional, query_args
from ..core.times import epoch_milliseconds, format_lastseen, from_epoch_milliseconds

bp = Blueprint("labels", __name__)

LABEL_PARAMS = frozenset({"worker_type", "min_machines", "format"})
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
            "last_failure_url": f"{root_url}/tasks/{last.task_id}/runs/{last.run_id}",
        })
    found.sort(key=lambda label: (-label["machines_failed"], label["label"]))
    return found


def default_min_machines(peer_failures: int) -> int:
    """The bar a label must reach when none is asked: more than PEER_FAILURES machines."""
    return peer_failures + 1


def labels_csv(labels: Iterable[dict[str, Any]]) -> str:
    """The labels as CSV with a header row, LABEL_FIELDS' columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(LABEL_FIELDS)
    for label in labels:
        writer.writerow([" ".join(label[name]) if name == "worker_types" else label[name]
                         for name in LABEL_FIELDS])
    return out.getvalue()


@bp.get("/labels")
def labels() -> Response:
    """The labels failing on more than PEER_FAILURES machines within PEER_WINDOW."""
    args = query_args(LABEL_PARAMS)
    app = app_state()
    config = app.config
    worker_type = optional_param(args, "worker_type", identifier_param, None)
    min_machines = optional_param(args, "min_machines", positive_int_param,
                                 default_min_machines(config.peer_failures))
    wants_csv = _wants_csv(args.get("format"))
    now = app.clock()
    found = failing_labels(app.store.failing_labels(now), now, config.peer_window,
                           config.taskcluster_root_url, min_machines=min_machines,
                           worker_type=worker_type)
    if wants_csv:
        return conditional(labels_csv(found).encode(), "text/csv")
    return conditional(orjson.dumps(found), "application/json")
