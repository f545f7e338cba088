"""GET /labels: the task labels failing on several machines within PEER_WINDOW, as JSON or CSV.

What is broken in the task, not in the machines: for the people who sheriff the tree. The rule
is views.labels', shared with the dashboard and /metrics.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable

import orjson
from flask import Blueprint, Response

from .appstate import app_state
from ..core.params import identifier_param, optional_param, positive_int_param
from .responses import conditional, query_args, wants_csv
from ..views.labels import LABEL_FIELDS, default_min_machines, failing_labels

bp = Blueprint("labels", __name__)

LABEL_PARAMS = frozenset({"worker_type", "min_machines", "format"})


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
    as_csv = wants_csv(args.get("format"))
    now = app.clock()
    found = failing_labels(app.store.failing_labels(now), now, config.peer_window,
                           config.taskcluster_root_url, min_machines=min_machines,
                           worker_type=worker_type)
    if as_csv:
        return conditional(labels_csv(found).encode(), "text/csv")
    return conditional(orjson.dumps(found), "application/json")
