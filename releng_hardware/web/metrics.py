"""`/metrics`: the fleet and the listener in Prometheus text format, computed per scrape."""

from __future__ import annotations

from datetime import datetime
from typing import Iterator, Mapping

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .appstate import app_state
from ..core.config import Config
from ..views.fleet import listener_report_time, seconds_since, taskcluster_poll_state
from ..core.problems import PROBLEMS
from ..views.labels import default_min_machines, failing_labels
from ..views.metric_names import (LABELS_FAILING, LISTENER_HEARTBEAT_AGE_SECONDS, LISTENER_LAG_SECONDS,
                                  LISTENER_MESSAGES, MACHINE_PROBLEMS, MACHINES,
                                  MACHINES_IDLE_WITH_WORK_WAITING, MACHINES_QUARANTINED,
                                  MACHINES_STALE, PENDING_TASKS, STALE_AFTER_SECONDS,
                                  TASKCLUSTER_POLL_AGE_SECONDS, TASKCLUSTER_POLL_OUTCOMES,
                                  TASKCLUSTER_POLLS)
from ..views.reads import read_fleet
from ..store.machines import LISTENER_COUNTERS, Store

bp = Blueprint("metrics", __name__)

# (label, upper bound in seconds): fixed so dashboards and alerts can rely on them
# whatever STALE_AFTER is; releng_hardware_machines_stale follows STALE_AFTER.
STALENESS_BUCKETS = (("lt_1h", 3600.0), ("1h_to_6h", 6 * 3600.0), ("6h_to_1d", 86400.0),
                     ("gt_1d", float("inf")))
UNKNOWN_BUCKET = "unknown"


def staleness_bucket(age_seconds: float | None) -> str:
    """The staleness bucket of a machine's age."""
    if age_seconds is None:
        return UNKNOWN_BUCKET
    for name, upper in STALENESS_BUCKETS:
        if age_seconds < upper:
            return name
    return STALENESS_BUCKETS[-1][0]


class FleetCollector(Collector):
    """Reads Redis once per scrape and yields every metric family of the service."""

    def __init__(self, store: Store, config: Config, now: datetime) -> None:
        self.store, self.config, self.now = store, config, now

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Every metric family, computed from Redis at `now`."""
        fleet = read_fleet(self.store, self.config, self.now)
        listener = self.store.listener_status()

        by_bucket = GaugeMetricFamily(
            MACHINES,
            "Machines per datacenter, worker type and time since last seen",
            labels=["datacenter", "worker_type", "staleness"])
        stale = _per_pool(MACHINES_STALE, "Machines not seen for at least STALE_AFTER")
        idle = _per_pool(MACHINES_IDLE_WITH_WORK_WAITING,
                         "Stale machines whose worker type has pending tasks")
        problems = GaugeMetricFamily(
            MACHINE_PROBLEMS,
            "Machines with each problem, per datacenter and worker type",
            labels=["problem", "datacenter", "worker_type"])
        quarantined = _per_pool(
            MACHINES_QUARANTINED,
            "Machines quarantined in Taskcluster (as last polled), per datacenter and worker type")
        quarantined_counts: dict[tuple[str, str], int] = {}
        counts: dict[tuple[str, str], dict[str, int]] = {}
        problem_counts: dict[tuple[str, str], dict[str, int]] = {}
        for machine in fleet.machines:
            group = counts.setdefault((machine["datacenter"], machine["worker_type"] or ""), {
                "stale": 0, "idle": 0, **{name: 0 for name, _ in STALENESS_BUCKETS}})
            bucket = staleness_bucket(machine["age_seconds"])
            group[bucket] = group.get(bucket, 0) + 1
            group["stale"] += machine["stale"]
            group["idle"] += machine["idle_with_work_waiting"]
        # the machines never seen have no age, but they have a problem: never_seen
        for machine in fleet.machines + fleet.never_seen:
            key = (machine["datacenter"], machine["worker_type"] or "")
            with_problem = problem_counts.setdefault(key, dict.fromkeys(PROBLEMS, 0))
            for code in machine["problems"]:
                with_problem[code] += 1
            quarantined_counts[key] = (quarantined_counts.get(key, 0)
                                       + (machine["quarantine"] is not None))
        for (datacenter, worker_type), group in sorted(counts.items()):
            # Every bucket, zeros included, so a rate or ratio never meets a missing series.
            for name in (*(name for name, _ in STALENESS_BUCKETS),
                         *((UNKNOWN_BUCKET,) if UNKNOWN_BUCKET in group else ())):
                by_bucket.add_metric([datacenter, worker_type, name], group[name])
            stale.add_metric([datacenter, worker_type], group["stale"])
            idle.add_metric([datacenter, worker_type], group["idle"])
        for (datacenter, worker_type), with_problem in sorted(problem_counts.items()):
            # zeros too: an alert's ratio needs every problem's series of every pool
            for code, count in with_problem.items():
                problems.add_metric([code, datacenter, worker_type], count)
        for (datacenter, worker_type), count in sorted(quarantined_counts.items()):
            quarantined.add_metric([datacenter, worker_type], count)  # zeros too, as above
        yield by_bucket
        yield stale
        yield idle
        yield problems
        yield quarantined
        yield GaugeMetricFamily(STALE_AFTER_SECONDS,
                                "The STALE_AFTER threshold in seconds", value=self.config.stale_after)

        pending_tasks = GaugeMetricFamily(
            PENDING_TASKS, "Tasks waiting for a worker, per worker type",
            labels=["provisioner", "worker_type"])
        for queue, count in sorted(fleet.pending.items()):
            provisioner, _, worker_type = queue.partition("/")
            pending_tasks.add_metric([provisioner, worker_type], count)
        yield pending_tasks
        yield labels_failing_metric(self.store, self.config, self.now)

        yield from listener_metrics(listener, self.now)

        status = self.store.taskcluster_status()
        # the store only ever HINCRBYs both: true counters, good ones by difference
        polls = CounterMetricFamily(TASKCLUSTER_POLLS, "Taskcluster quarantine polls, by outcome",
                                    labels=["outcome"])
        good, failed = TASKCLUSTER_POLL_OUTCOMES
        polls.add_metric([good], status["polls"] - status["failures"])
        polls.add_metric([failed], status["failures"])
        yield polls
        poll = taskcluster_poll_state(status, self.now, self.config.taskcluster_poll)
        if poll["age_seconds"] is not None:  # absent when never polled, or polling is off
            yield GaugeMetricFamily(
                TASKCLUSTER_POLL_AGE_SECONDS,
                "Seconds since the last good Taskcluster poll (the quarantines' age)",
                value=poll["age_seconds"])


def labels_failing_metric(store: Store, config: Config, now: datetime) -> GaugeMetricFamily:
    """How many labels `GET /labels` lists by default: failing on more than PEER_FAILURES
    machines within PEER_WINDOW (a bad push or a broken test, not the hardware)."""
    # One series over all worker types, as /labels counts a label's machines across them:
    # per worker type, a push failing on two machines of each of two pools would be missed.
    found = failing_labels(store.failing_labels(now), now, config.peer_window,
                           config.taskcluster_root_url,
                           min_machines=default_min_machines(config.peer_failures))
    return GaugeMetricFamily(
        LABELS_FAILING,
        "Task labels that failed on more than PEER_FAILURES machines within PEER_WINDOW (GET /labels)",
        value=len(found))


def _per_pool(name: str, documentation: str) -> GaugeMetricFamily:
    """A gauge with a series per datacenter and worker type."""
    return GaugeMetricFamily(name, documentation, labels=["datacenter", "worker_type"])


def listener_metrics(listener: Mapping[str, str], now: datetime) -> Iterator[
        GaugeMetricFamily | CounterMetricFamily]:
    """The listener's counters and lags from its status hash in Redis."""
    # The store only ever HINCRBYs these, so they are true counters.
    messages = CounterMetricFamily(
        LISTENER_MESSAGES,
        "Queue messages the listener handled, by outcome", labels=["outcome"])
    for outcome in LISTENER_COUNTERS:
        messages.add_metric([outcome], _number(listener.get(outcome)))
    yield messages
    lag = seconds_since(listener.get("newest_event_at"), now)
    if lag is not None:
        yield GaugeMetricFamily(
            LISTENER_LAG_SECONDS,
            "Seconds between now and the newest event time the listener wrote", value=lag)
    silence = seconds_since(listener_report_time(listener), now)
    if silence is not None:
        yield GaugeMetricFamily(
            LISTENER_HEARTBEAT_AGE_SECONDS,
            "Seconds since the listener last reported a heartbeat or a message", value=silence)


def _number(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of the fleet and the listener."""
    app = app_state()
    # A registry per request: nothing is shared between requests, apps or tests.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(app.store, app.config, app.clock()))
    payload = generate_latest(registry)
    return Response(payload, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4,
                                      "Cache-Control": "no-cache"})
