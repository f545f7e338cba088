"""What the web serves of Taskcluster's state: quarantines, a backfilled machine's source, the
poll's age (in /summary, /metrics, /__heartbeat__ and the dashboard)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from releng_hardware.views.fields import QUARANTINE_COLUMNS
from releng_hardware.views.metric_names import MACHINES_QUARANTINED, TASKCLUSTER_POLL_AGE_SECONDS, TASKCLUSTER_POLLS_TOTAL
from releng_hardware.taskcluster.poller import poll_once
from releng_hardware.core.records import BackfillItem, Quarantine
from releng_hardware.tools.fake_taskcluster import FakeTaskcluster
from releng_hardware.core.times import format_lastseen
from releng_hardware.taskcluster.client import Credentials, Taskcluster
from tests.conftest import NOW, make_config, seen
from tests.unit.web.test_dashboard import Page, page
from tests.unit.web.test_openapi import errors

POOL, WINDOWS = "gecko-t-linux-talos", "gecko-t-win10-64-hw"
UNTIL = format_lastseen(NOW + timedelta(hours=2))
BROKEN = Quarantine(UNTIL, "disk errors, bug 1234", "mozilla-auth0/ad|Mozilla-LDAP|ops", f"releng-hardware/{POOL}")
CLIENT_ID, TOKEN = "project/releng/ops", "s3cr3t-access-token-value"


@pytest.fixture
def fleet(store):
    """Three linux machines (one stale, two quarantined: one ends in 2h, one in a day), a
    Windows one, and one known only from a backfill."""
    seen(store, "t-linux64-ms-100", ago=timedelta(minutes=5))
    seen(store, "t-linux64-ms-101", ago=timedelta(hours=7), state="failed")
    seen(store, "t-linux64-ms-102", ago=timedelta(minutes=20))
    seen(store, "t-w1064-ms-281", dc="mdc2", ago=timedelta(minutes=3), worker_type=WINDOWS)
    store.backfill([BackfillItem("mdc1:t-linux64-ms-150", NOW - timedelta(minutes=40),
                                 NOW - timedelta(days=30), "releng-hardware", POOL)])
    store.set_quarantine("mdc1:t-linux64-ms-101", BROKEN)
    store.set_quarantine("mdc1:t-linux64-ms-102", BROKEN._replace(
        until=format_lastseen(NOW + timedelta(days=1)), reason=None, by=None))
    store.taskcluster_polled(NOW - timedelta(minutes=2))
    return store


def by_id(response) -> dict[str, dict]:
    assert response.status_code == 200, response.get_json()
    return {machine["id"]: machine for machine in response.get_json()}


def test_machines_serve_each_machines_quarantine_and_null_for_the_others(client, fleet):
    machines = by_id(client.get("/machines"))
    assert machines["mdc1:t-linux64-ms-101"]["quarantine"] == {
        "until": UNTIL, "reason": "disk errors, bug 1234", "by": "mozilla-auth0/ad|Mozilla-LDAP|ops"}
    assert machines["mdc1:t-linux64-ms-102"]["quarantine"]["reason"] is None
    assert machines["mdc1:t-linux64-ms-100"]["quarantine"] is None
    assert list(machines["mdc1:t-linux64-ms-100"])[-2:] == ["quarantine", "source"]
    detail = client.get("/machines/t-linux64-ms-101").get_json()
    assert detail["quarantine"] == machines["mdc1:t-linux64-ms-101"]["quarantine"]
    assert client.get("/machines/mdc1:t-linux64-ms-100").get_json()["quarantine"] is None


def test_a_quarantine_is_null_once_its_end_has_passed(app_factory, fleet):
    later = app_factory(now=NOW + timedelta(hours=3)).test_client()
    machines = by_id(later.get("/machines"))
    assert machines["mdc1:t-linux64-ms-101"]["quarantine"] is None
    assert machines["mdc1:t-linux64-ms-102"]["quarantine"] is not None
    assert later.get("/machines/mdc1:t-linux64-ms-101").get_json()["quarantine"] is None
    assert later.get("/summary").get_json()["totals"]["quarantined"] == 1
    # exactly at its end it has ended: Taskcluster lifts a quarantine with an end in the past
    at_end = app_factory(now=NOW + timedelta(hours=2)).test_client()
    assert by_id(at_end.get("/machines"))["mdc1:t-linux64-ms-101"]["quarantine"] is None


def test_source_says_which_machines_are_known_from_a_backfill_only(client, fleet):
    machines = by_id(client.get("/machines"))
    assert machines["mdc1:t-linux64-ms-150"]["source"] == "taskcluster"
    assert {machine["source"] for name, machine in machines.items()
            if name != "mdc1:t-linux64-ms-150"} == {None}
    seen(fleet, "t-linux64-ms-150", ago=timedelta(minutes=1))  # the listener sees it now
    assert client.get("/machines/mdc1:t-linux64-ms-150").get_json()["source"] is None


@pytest.mark.parametrize("value, expected", [
    ("true", ["mdc1:t-linux64-ms-101", "mdc1:t-linux64-ms-102"]),
    ("false", ["mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-150", "mdc2:t-w1064-ms-281"]),
])
def test_quarantined_filters_the_machines(client, fleet, value, expected):
    assert list(by_id(client.get(f"/machines?quarantined={value}"))) == expected
    # with the other filters, and through the lightest view
    assert list(by_id(client.get(f"/machines?quarantined={value}&fields=id&datacenter=mdc1"))) == [
        machine_id for machine_id in expected if machine_id.startswith("mdc1:")]


@pytest.mark.parametrize("value", ["yes", "1", "", "True"])
def test_a_bad_quarantined_value_is_a_400_naming_it(client, fleet, value):
    response = client.get(f"/machines?quarantined={value}")
    assert response.status_code == 400
    assert response.get_json()["parameter"] == "quarantined"
    assert page(client, "/").ids  # the page itself still answers
    assert client.get(f"/?quarantined={value or 'x'}").status_code == 400


def test_fields_and_csv_serve_the_quarantine(client, fleet):
    sparse = client.get("/machines?fields=id,quarantine&quarantined=true").get_json()
    assert sparse[0] == {"id": "mdc1:t-linux64-ms-101", "quarantine": BROKEN.as_json()}
    rows = list(csv.DictReader(io.StringIO(client.get("/machines?format=csv").get_data(as_text=True))))
    assert list(rows[0])[-4:] == [*QUARANTINE_COLUMNS, "source"]
    row = next(row for row in rows if row["id"] == "mdc1:t-linux64-ms-101")
    assert [row[column] for column in QUARANTINE_COLUMNS] == [BROKEN.until, BROKEN.reason, BROKEN.by]
    other = next(row for row in rows if row["id"] == "mdc1:t-linux64-ms-100")
    assert [other[column] for column in QUARANTINE_COLUMNS] == ["", "", ""]
    asked = client.get("/machines?format=csv&fields=id,quarantine,source&quarantined=true")
    assert asked.get_data(as_text=True).split("\r\n")[0] == "id,quarantine_until,quarantine_reason,quarantine_by,source"


def test_summary_counts_the_quarantined_per_group_and_in_totals(client, fleet):
    body = client.get("/summary").get_json()
    groups = {(group["datacenter"], group["worker_type"]): group for group in body["groups"]}
    assert groups[("mdc1", POOL)]["quarantined"] == 2
    assert groups[("mdc2", WINDOWS)]["quarantined"] == 0
    assert body["totals"]["quarantined"] == 2
    assert body["taskcluster"] == {"polling": True,
                                   "last_good_poll_at": format_lastseen(NOW - timedelta(minutes=2)),
                                   "age_seconds": 120.0, "consecutive_failures": 0}


def test_summary_counts_a_never_seen_machine_taskcluster_quarantined(client, fleet):
    fleet.update_inventory(lambda current: {"mdc1:t-linux64-ms-199": POOL})
    fleet.set_quarantine("mdc1:t-linux64-ms-199", BROKEN)
    body = client.get("/summary").get_json()
    assert body["totals"]["quarantined"] == 3 and body["totals"]["never_seen"] == 1


def samples(client) -> dict[str, dict[tuple, float]]:
    text = client.get("/metrics").get_data(as_text=True)
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_count_the_quarantined_per_pool_and_give_the_polls_age(client, fleet):
    got = samples(client)
    assert got[MACHINES_QUARANTINED] == {
        (("datacenter", "mdc1"), ("worker_type", POOL)): 2.0,
        (("datacenter", "mdc2"), ("worker_type", WINDOWS)): 0.0,  # zeros too
    }
    assert got[TASKCLUSTER_POLL_AGE_SECONDS] == {(): 120.0}


def test_metrics_count_the_polls_by_outcome(client, store, fleet):
    before = samples(client)[TASKCLUSTER_POLLS_TOTAL]
    store.taskcluster_polled(NOW, error="HTTP 503 from worker-manager")
    store.taskcluster_polled(NOW, error="HTTP 503 from worker-manager")
    store.taskcluster_polled(NOW)
    after = samples(client)[TASKCLUSTER_POLLS_TOTAL]
    good, failed = (("outcome", "good"),), (("outcome", "failed"),)
    assert after[good] == before[good] + 1
    assert after[failed] == before[failed] + 2


def test_the_polls_age_is_absent_when_never_polled_or_polling_is_off(app_factory, store, fleet):
    off = app_factory(make_config(taskcluster_poll=0)).test_client()
    assert TASKCLUSTER_POLL_AGE_SECONDS not in samples(off)
    assert off.get("/summary").get_json()["taskcluster"]["age_seconds"] is None
    store.redis.delete(store.keys.taskcluster)
    assert TASKCLUSTER_POLL_AGE_SECONDS not in samples(app_factory().test_client())


def heartbeat(app_factory, now=NOW, **settings):
    response = app_factory(make_config(**settings), now=now).test_client().get("/__heartbeat__")
    assert response.status_code == 200  # the poll's state is never an error
    return response.get_json()


def test_heartbeat_warns_once_the_last_good_poll_is_older_than_three_polls(app_factory, fleet):
    fleet.listener_heartbeat(NOW + timedelta(minutes=16))
    fleet.redis.hset(fleet.keys.listener, "last_message_at", format_lastseen(NOW + timedelta(minutes=16)))
    # polled two minutes before NOW, every 5 minutes: late past NOW + 13 minutes
    on_time = heartbeat(app_factory, NOW + timedelta(minutes=12))
    assert on_time["checks"]["taskcluster"] == "ok" and on_time["status"] == "ok"
    late = heartbeat(app_factory, NOW + timedelta(minutes=14))
    assert late["checks"] == {"redis": "ok", "listener": "ok", "taskcluster": "warning"}
    assert late["status"] == "warning"
    assert "no good Taskcluster poll for 960s" in late["details"]["taskcluster"]["problem"]
    # a longer TASKCLUSTER_POLL waits longer
    assert heartbeat(app_factory, NOW + timedelta(minutes=14),
                     taskcluster_poll=600)["checks"]["taskcluster"] == "ok"


def test_heartbeat_warns_when_never_polled_and_notes_when_polling_is_off(app_factory, store):
    store.listener_heartbeat(NOW)
    never = heartbeat(app_factory)
    assert never["checks"]["taskcluster"] == "warning"
    assert "never been polled" in never["details"]["taskcluster"]["problem"]
    off = heartbeat(app_factory, taskcluster_poll=0)
    assert off["checks"]["taskcluster"] == "ok"
    assert "TASKCLUSTER_POLL is 0" in off["details"]["taskcluster"]["note"]


@pytest.mark.parametrize("path, schema", [
    ("/machines?quarantined=true", {"type": "array", "items": {"$ref": "#/components/schemas/Machine"}}),
    ("/machines?fields=quarantine,source", {
        "type": "array", "items": {"$ref": "#/components/schemas/MachineFields"}}),
    ("/machines/mdc1:t-linux64-ms-101", {"$ref": "#/components/schemas/MachineDetail"}),
    ("/machines/mdc1:t-linux64-ms-150", {"$ref": "#/components/schemas/MachineDetail"}),
    ("/summary", {"$ref": "#/components/schemas/Summary"}),
    ("/__heartbeat__", {"$ref": "#/components/schemas/Heartbeat"}),
])
def test_answers_with_quarantines_are_as_documented(client, fleet, path, schema):
    document = client.get("/openapi.json").get_json()
    fleet.taskcluster_polled(NOW, "worker-manager: HTTP 503")  # an error in the details too
    assert errors(client.get(path).get_json(), schema, document) == []


# -- the real poll, then the app --------------------------------------------------------

@pytest.fixture
def fake_tc() -> Iterator[FakeTaskcluster]:
    with FakeTaskcluster(credentials={CLIENT_ID: (TOKEN, [])}, clock=lambda: NOW,
                            stall_seconds=3) as server:
        yield server


def test_taskcluster_down_for_several_polls_the_web_serves_the_last_state_with_its_age(
        app_factory, store, fake_tc):
    config = make_config()
    for number in range(3):
        host = f"t-linux64-ms-{number:03d}"
        seen(store, host, ago=timedelta(minutes=10))
        fake_tc.add_worker("releng-hardware", POOL, "mdc1", host, first_claim=NOW - timedelta(days=9),
                           quarantine_until=NOW + timedelta(days=1) if number == 0 else None,
                           reason="reimage", by="ops")
    taskcluster = Taskcluster(fake_tc.root_url, Credentials(CLIENT_ID, TOKEN), timeout=1)
    assert poll_once(store, taskcluster, config, NOW) is None
    fake_tc.fault = "error"
    for minutes in (5, 10, 15, 20):
        assert poll_once(store, taskcluster, config, NOW + timedelta(minutes=minutes)) is not None
    later = NOW + timedelta(minutes=21)
    store.listener_heartbeat(later)
    client = app_factory(now=later).test_client()
    machines = by_id(client.get("/machines?quarantined=true"))
    assert machines["mdc1:t-linux64-ms-000"]["quarantine"] == {
        "until": format_lastseen(NOW + timedelta(days=1)), "reason": "reimage", "by": "ops"}
    summary = client.get("/summary").get_json()
    assert summary["taskcluster"] == {"polling": True, "last_good_poll_at": format_lastseen(NOW),
                                      "age_seconds": 1260.0, "consecutive_failures": 4}
    body = client.get("/__heartbeat__").get_json()
    assert body["checks"]["taskcluster"] == "warning"
    assert "HTTP 500" in body["details"]["taskcluster"]["last_error"]
    assert samples(client)[TASKCLUSTER_POLL_AGE_SECONDS] == {(): 1260.0}
    html = client.get("/").get_data(as_text=True)
    assert "4 failed polls since" in html
    # no credential in any answer
    for path in ("/machines", "/machines/mdc1:t-linux64-ms-000", "/summary", "/__heartbeat__",
                 "/metrics", "/", "/machine/mdc1:t-linux64-ms-000", "/openapi.json",
                 "/machines?format=csv"):
        text = client.get(path).get_data(as_text=True)
        assert TOKEN not in text and CLIENT_ID not in text, path


# -- the dashboard -----------------------------------------------------------------------

def test_quarantined_machines_leave_needs_attention_for_their_own_section(client, fleet):
    dashboard = page(client)
    assert dashboard.section("attention") == []  # its one stale machine is quarantined
    assert dashboard.section("quarantined") == ["mdc1:t-linux64-ms-101", "mdc1:t-linux64-ms-102"]
    assert "mdc1:t-linux64-ms-100" in dashboard.section("others")
    status = dashboard.row("mdc1:t-linux64-ms-101")["cells"][0]
    # its problem badges still show, beside until, reason and by
    assert status.startswith("stale")
    assert "quarantined until 2026-11-20 17:00:00 UTC" in status
    assert "disk errors, bug 1234" in status and "by mozilla-auth0/ad|Mozilla-LDAP|ops" in status
    assert "quarantined" in dashboard.row("mdc1:t-linux64-ms-101")["class"]


def test_the_page_filters_and_counts_the_quarantined(client, fleet):
    dashboard = page(client, "/?quarantined=true")
    assert dashboard.ids == ["mdc1:t-linux64-ms-101", "mdc1:t-linux64-ms-102"]
    assert ("true", True) in dashboard.options["quarantined"]
    # datacenter, worker type, total, seen 1h, stale, work waiting, exception, quarantined, ...
    assert page(client).summary_rows[0][:8] == ["mdc1", POOL, "4", "3", "1", "0", "0", "2"]
    html = " ".join(re.sub("<[^>]+>", "", client.get("/").get_data(as_text=True)).split())
    assert "2 quarantined." in html and "quarantines from Taskcluster, polled 2m ago" in html


def test_the_machine_page_shows_the_quarantine_and_the_backfill(client, fleet):
    html = client.get("/machine/mdc1:t-linux64-ms-101").get_data(as_text=True)
    facts = Page(html)
    assert facts.resources  # parsed
    assert 'id="quarantine"' in html and "disk errors, bug 1234" in html
    assert "not quarantined" in client.get("/machine/mdc1:t-linux64-ms-100").get_data(as_text=True)
    assert "Taskcluster's worker list only" in client.get(
        "/machine/mdc1:t-linux64-ms-150").get_data(as_text=True)
