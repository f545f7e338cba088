"""Backfilling lastseen from worker-manager: Taskcluster's workers as the store's writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from ..core.records import BackfillItem
from ..core.times import MAX_CLOCK_SKEW
from .client import Worker


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill read and would write."""

    items: list[BackfillItem]
    workers: int
    without_activity: int  # no lastDateActive, or one in the future: nothing to write


def backfill_items(workers: Iterable[Worker], now: datetime) -> BackfillPlan:
    """The store writes for Taskcluster's workers: lastseen from lastDateActive (±30 minutes),
    firstseen from firstClaim."""
    items, count, without = [], 0, 0
    for worker in workers:
        count += 1
        if worker.last_active is None or worker.last_active > now + MAX_CLOCK_SKEW:
            without += 1
            continue
        items.append(BackfillItem(worker.machine_id, worker.last_active, worker.first_claim,
                                  worker.provisioner_id, worker.worker_type))
    return BackfillPlan(items, count, without)
