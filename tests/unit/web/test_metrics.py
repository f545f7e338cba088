"""`/metrics` in Prometheus text format, through Flask's test client on fakeredis."""

from __future__ import annotations

from datetime import timedelta

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.web.metrics import staleness_bucket
from tests.conftest import NOW, make_config

DEADLINE = NOW + timedelta(days=1)


def worker(host, dc="mdc1", *, ago, worker_type="gecko-t-linux-talos", task="AAAAAAAAQAGAAAAAAAAAAA"):
    """A resolved run of a machine `ago` before NOW."""
    return WorkerEvent(dc, host, "releng-hardware", worker_type, task, 0, "completed", "completed",
                       NOW - ago, DEADLINE, True)


def pending(task, worker_type="gecko-t-win10-64-hw"):
    """A task waiting for a worker type until DEADLINE."""
    return PendingEvent("releng-hardware", worker_type, task, 0, NOW, DEADLINE)


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}, parsed like Prometheus does."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def machines(samples, datacenter, worker_type) -> dict[str, float]:
    """The staleness buckets of one datacenter x worker type."""
    return {dict(labels)["staleness"]: value for (name, labels), value in samples.items()
            if name == "releng_hardware_machines"
            and dict(labels)["datacenter"] == datacenter and dict(labels)["worker_type"] == worker_type}


@pytest.fixture
def fleet(store):
    """Machines in every staleness bucket, two worker types, and tasks waiting."""
    store.record([
        worker("t-linux64-ms-100", ago=timedelta(minutes=59)),
        worker("t-linux64-ms-101", ago=timedelta(hours=1), task="BBBBBBBBQAGAAAAAAAAAAA"),
        worker("t-linux64-ms-102", ago=timedelta(hours=6), task="CCCCCCCCQAGAAAAAAAAAAA"),
        worker("t-linux64-ms-103", ago=timedelta(days=2), task="DDDDDDDDQAGAAAAAAAAAAA"),
        worker("t-w1064-ms-281", dc="mdc2", ago=timedelta(hours=20), worker_type="gecko-t-win10-64-hw",
               task="FFFFFFFFQAGAAAAAAAAAAA"),
        pending("EEEEEEEEQAGAAAAAAAAAAA"), pending("GGGGGGGGQAGAAAAAAAAAAA"),
    ], now=NOW, processed=10, skipped=2, malformed=1)
    return store


def test_metrics_are_prometheus_text_format_0_0_4(client, fleet):
    response = client.get("/metrics")
    assert response.headers["Content-Type"] == prometheus_client.CONTENT_TYPE_PLAIN_0_0_4
    assert response.get_data(as_text=True).startswith("# HELP releng_hardware_")


def test_machines_are_counted_per_datacenter_worker_type_and_staleness_bucket(client, fleet):
    samples = scrape(client)
    assert machines(samples, "mdc1", "gecko-t-linux-talos") == {
        "lt_1h": 1, "1h_to_6h": 1, "6h_to_1d": 1, "gt_1d": 1}
    assert machines(samples, "mdc2", "gecko-t-win10-64-hw") == {
        "lt_1h": 0, "1h_to_6h": 0, "6h_to_1d": 1, "gt_1d": 0}


def test_stale_and_idle_with_work_waiting_follow_stale_after(app_factory, fleet):
    samples = scrape(app_factory(make_config(stale_after=5 * 3600.0)).test_client())
    mdc1 = (("datacenter", "mdc1"), ("worker_type", "gecko-t-linux-talos"))
    mdc2 = (("datacenter", "mdc2"), ("worker_type", "gecko-t-win10-64-hw"))
    assert samples[("releng_hardware_machines_stale", mdc1)] == 2
    assert samples[("releng_hardware_machines_stale", mdc2)] == 1
    # only the win10 worker type has tasks waiting
    assert samples[("releng_hardware_machines_idle_with_work_waiting", mdc1)] == 0
    assert samples[("releng_hardware_machines_idle_with_work_waiting", mdc2)] == 1
    assert samples[("releng_hardware_stale_after_seconds", ())] == 5 * 3600


def test_pending_tasks_per_worker_type(client, fleet):
    samples = scrape(client)
    assert samples[("releng_hardware_pending_tasks", (
        ("provisioner", "releng-hardware"), ("worker_type", "gecko-t-win10-64-hw")))] == 2


def test_pending_tasks_past_their_deadline_are_not_counted(app_factory, fleet):
    samples = scrape(app_factory(now=DEADLINE + timedelta(seconds=1)).test_client())
    assert samples[("releng_hardware_pending_tasks", (
        ("provisioner", "releng-hardware"), ("worker_type", "gecko-t-win10-64-hw")))] == 0


def test_listener_counters_come_from_its_status_in_redis(client, fleet, store):
    store.record([worker("t-linux64-ms-100", ago=timedelta(minutes=59))], now=NOW)  # a redelivery
    samples = scrape(client)
    outcomes = {dict(labels)["outcome"]: value for (name, labels), value in samples.items()
                if name == "releng_hardware_listener_messages_total"}
    status = store.listener_status()
    assert outcomes == {name: float(status[name]) for name in (
        "processed", "written", "skipped", "malformed", "duplicate", "ignored")}
    assert outcomes["processed"] == 11 and outcomes["duplicate"] == 1
    assert outcomes["skipped"] == 2 and outcomes["malformed"] == 1


def test_listener_lag_is_now_minus_the_newest_event_time(app_factory, fleet):
    samples = scrape(app_factory(now=NOW + timedelta(seconds=30)).test_client())
    # the newest event was 59 minutes before NOW
    assert samples[("releng_hardware_listener_lag_seconds", ())] == 59 * 60 + 30


def test_listener_heartbeat_age_counts_from_its_last_sign_of_life(app_factory, fleet, store):
    store.listener_heartbeat(NOW - timedelta(seconds=20))
    samples = scrape(app_factory(now=NOW + timedelta(seconds=10)).test_client())
    # the batch written at NOW is more recent than the heartbeat
    assert samples[("releng_hardware_listener_heartbeat_age_seconds", ())] == 10


def test_without_a_listener_counters_are_zero_and_lag_is_absent(client, store):
    store.preload({"mdc1:t-linux64-ms-100": NOW - timedelta(hours=2)})
    samples = scrape(client)
    assert samples[("releng_hardware_listener_messages_total", (("outcome", "processed"),))] == 0
    assert not any(name.startswith("releng_hardware_listener_lag") for name, _ in samples)
    # a preloaded machine has no worker type yet, and is still counted
    assert samples[("releng_hardware_machines", (
        ("datacenter", "mdc1"), ("staleness", "1h_to_6h"), ("worker_type", "")))] == 1


def test_unreadable_lastseen_goes_to_the_unknown_bucket(client, store):
    store.redis.hset("machines", "mdc1:t-broken-1", "yesterday")
    samples = scrape(client)
    assert samples[("releng_hardware_machines", (
        ("datacenter", "mdc1"), ("staleness", "unknown"), ("worker_type", "")))] == 1


def test_scrapes_never_touch_the_global_registry(client, fleet):
    first, second = scrape(client), scrape(client)
    assert first == second
    for name in ("releng_hardware_stale_after_seconds", "releng_hardware_listener_lag_seconds"):
        assert prometheus_client.REGISTRY.get_sample_value(name) is None


def test_redis_down_is_a_503_json(client, fleet, fake_server):
    fake_server.connected = False
    response = client.get("/metrics")
    assert response.status_code == 503
    assert response.get_json()["error"] == "redis_unavailable"


@pytest.mark.parametrize("age, bucket", [
    (None, "unknown"), (-1, "lt_1h"), (3599.9, "lt_1h"), (3600, "1h_to_6h"), (21599, "1h_to_6h"),
    (21600, "6h_to_1d"), (86400, "gt_1d"), (10 * 86400, "gt_1d"),
])
def test_staleness_bucket_boundaries(age, bucket):
    assert staleness_bucket(age) == bucket


def test_a_scrape_yields_the_families_named_in_metrics_in_their_order(client, fleet):
    from releng_hardware.views.metric_names import EXPOSED_FAMILIES
    from releng_hardware.web.openapi import build_document

    fleet.listener_heartbeat(NOW)  # so the lag and heartbeat families are present too
    fleet.taskcluster_polled(NOW)  # and the Taskcluster poll's age
    text = client.get("/metrics").get_data(as_text=True)
    names = [sample.name for family in text_string_to_metric_families(text)
             for sample in family.samples]
    assert list(dict.fromkeys(names)) == list(EXPOSED_FAMILIES)
    described = build_document()["paths"]["/metrics"]["get"]["description"]
    assert all(name in described for name in EXPOSED_FAMILIES)


LABELS_FAILING = ("releng_hardware_labels_failing_on_several_machines", ())
BAD_PUSH = "test-linux1804-64-shippable-qr/opt-talos-g4-e10s"
INTERMITTENT = "test-linux1804-64-shippable-qr/opt-mochitest-1"
task_numbers = iter(range(10**4))


def labelled(host, label, state, *, ago, worker_type="gecko-t-linux-talos"):
    """A resolved run of `label` on `host`, ended `ago` before NOW."""
    task = f"TASK{next(task_numbers):04d}QAGAAAAAAAAAAA"
    end = NOW - ago
    return WorkerEvent("mdc1", host, "releng-hardware", worker_type, task, 0, state, state,
                       end, DEADLINE, True, end - timedelta(minutes=10), end, label)


def test_no_label_fails_on_several_machines_without_labels(client, fleet):
    assert scrape(client)[LABELS_FAILING] == 0


def test_labels_failing_counts_what_get_labels_lists_by_default(client, store):
    store.record([
        # a bad push: one label failing on three machines, two of them of another worker type
        labelled("t-linux64-ms-1", BAD_PUSH, "failed", ago=timedelta(minutes=30)),
        labelled("t-w1064-ms-1", BAD_PUSH, "failed", ago=timedelta(minutes=20),
                 worker_type="gecko-t-win10-64-hw"),
        labelled("t-w1064-ms-2", BAD_PUSH, "failed", ago=timedelta(minutes=10),
                 worker_type="gecko-t-win10-64-hw"),
        # PEER_FAILURES (2) machines only: not several
        labelled("t-linux64-ms-2", INTERMITTENT, "failed", ago=timedelta(minutes=30)),
        labelled("t-linux64-ms-3", INTERMITTENT, "failed", ago=timedelta(minutes=20)),
        labelled("t-linux64-ms-4", INTERMITTENT, "completed", ago=timedelta(minutes=10)),
    ], now=NOW)
    listed = client.get("/labels").get_json()
    assert [label["label"] for label in listed] == [BAD_PUSH]
    assert scrape(client)[LABELS_FAILING] == len(listed) == 1


def test_labels_failing_follows_peer_window_and_peer_failures(app_factory, store):
    store.record([labelled(f"t-linux64-ms-{i}", BAD_PUSH, "failed", ago=timedelta(hours=2 + i))
                  for i in range(3)], now=NOW)
    assert scrape(app_factory().test_client())[LABELS_FAILING] == 1
    # the oldest failure falls out of a 3-hour window: two machines left
    narrow = make_config(peer_window=3 * 3600.0)
    assert scrape(app_factory(narrow).test_client())[LABELS_FAILING] == 0
    # with PEER_FAILURES=1, two machines are several
    lower = make_config(peer_window=3 * 3600.0, peer_failures=1)
    assert scrape(app_factory(lower).test_client())[LABELS_FAILING] == 1


@pytest.mark.parametrize("code", ["fails_where_others_pass", "slow"])
def test_the_peer_problems_have_their_gauges(client, fleet, code):
    samples = scrape(client)
    assert samples[("releng_hardware_machine_problems", (
        ("datacenter", "mdc1"), ("problem", code), ("worker_type", "gecko-t-linux-talos")))] == 0
