"""The JSON API through Flask's test client, on fakeredis."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
import redis

from releng_hardware.core.events import PendingEvent
from releng_hardware.core.problems import PROBLEMS
from releng_hardware.store.machines import Store
from releng_hardware.core.times import LASTSEEN_FORMAT
from tests.conftest import DEADLINE, NOW, make_config, seen


@pytest.fixture
def fleet(store):
    seen(store, "t-linux64-ms-100", ago=timedelta(minutes=5), task="AAAAAAAAQAGAAAAAAAAAAA")
    seen(store, "t-linux64-ms-101", ago=timedelta(hours=7), task="BBBBBBBBQAGAAAAAAAAAAA", state="exception")
    seen(store, "t-w1064-ms-281", dc="mdc2", ago=timedelta(hours=2), worker_type="gecko-t-win10-64-hw",
         task="CCCCCCCCQAGAAAAAAAAAAA", state="failed")
    seen(store, "t-linux64-ms-100", dc="mdc2", ago=timedelta(days=3), task="DDDDDDDDQAGAAAAAAAAAAA")
    return store


def ids(response):
    assert response.status_code == 200, response.get_json()
    return [machine["id"] for machine in response.get_json()]


def test_machines_lists_every_machine_with_the_proof_of_concept_fields(client, fleet):
    response = client.get("/machines")
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert len(body) == 4
    machine = next(m for m in body if m["id"] == "mdc1:t-linux64-ms-100")
    assert (machine["machine"], machine["datacenter"]) == ("t-linux64-ms-100", "mdc1")
    assert machine["lastseen"] == "2026-11-20T14:55:00.000000"
    # on-duty tools parse it exactly like this, against utcnow()
    assert datetime.strptime(machine["lastseen"], LASTSEEN_FORMAT) == NOW - timedelta(minutes=5)
    assert machine["age_seconds"] == 300
    assert machine["last_task"]["url"] == "https://firefox-ci-tc.services.mozilla.com/tasks/AAAAAAAAQAGAAAAAAAAAAA"
    assert machine["counts"] == {"completed": 1, "failed": 0, "exception": 0}


def test_legacy_lastseen_without_fraction_is_served_with_six_digits(client, store):
    store.redis.hset("machines", "mdc1:t-old-1", "2018-11-08T08:47:50")
    machine = client.get("/machines/mdc1:t-old-1").get_json()
    assert machine["lastseen"] == "2018-11-08T08:47:50.000000"
    assert machine["last_task"] is None


def test_one_machine_by_id(client, fleet):
    response = client.get("/machines/mdc2:t-w1064-ms-281")
    assert response.status_code == 200
    assert response.get_json()["last_task"]["state"] == "failed"


def test_unknown_machine_is_a_json_404(client, fleet):
    response = client.get("/machines/mdc1:t-never-seen")
    assert response.status_code == 404 and response.mimetype == "application/json"
    assert response.get_json()["error"] == "not_found"


def test_unique_hostname_finds_its_machine(client, fleet):
    assert client.get("/machines/t-w1064-ms-281").get_json()["id"] == "mdc2:t-w1064-ms-281"


def test_hostname_in_two_datacenters_is_a_409_listing_both(client, fleet):
    response = client.get("/machines/t-linux64-ms-100")
    assert response.status_code == 409
    assert response.get_json()["candidates"] == ["mdc1:t-linux64-ms-100", "mdc2:t-linux64-ms-100"]


def test_unknown_hostname_is_a_404(client, fleet):
    assert client.get("/machines/t-nothing").status_code == 404


@pytest.mark.parametrize("query, expected", [
    ("datacenter=mdc2", ["mdc2:t-linux64-ms-100", "mdc2:t-w1064-ms-281"]),
    ("worker_type=gecko-t-win10-64-hw", ["mdc2:t-w1064-ms-281"]),
    ("state=exception", ["mdc1:t-linux64-ms-101"]),
    ("stale=6h", ["mdc2:t-linux64-ms-100", "mdc1:t-linux64-ms-101"]),
    ("stale=6h&datacenter=mdc1", ["mdc1:t-linux64-ms-101"]),
    ("seen_within=3h&sort=lastseen", ["mdc2:t-w1064-ms-281", "mdc1:t-linux64-ms-100"]),
    ("seen_within=10800", ["mdc1:t-linux64-ms-100", "mdc2:t-w1064-ms-281"]),
    ("sort=-lastseen", ["mdc1:t-linux64-ms-100", "mdc2:t-w1064-ms-281", "mdc1:t-linux64-ms-101",
                        "mdc2:t-linux64-ms-100"]),
    ("provisioner=nobody", []),
])
def test_filters_combine(client, fleet, query, expected):
    assert ids(client.get(f"/machines?{query}")) == expected


@pytest.mark.parametrize("query, parameter", [
    ("stale=soon", "stale"), ("seen_within=-5m", "seen_within"), ("sort=age", "sort"),
    ("state=sleeping", "state"), ("datacenter=../etc", "datacenter"), ("format=xml", "format"),
    ("colour=red", "colour"), ("datacenter=mdc1&datacenter=mdc2", "datacenter"),
])
def test_bad_query_parameters_are_a_400_naming_the_parameter(client, fleet, query, parameter):
    response = client.get(f"/machines?{query}")
    assert response.status_code == 400 and response.mimetype == "application/json"
    assert response.get_json()["parameter"] == parameter


@pytest.mark.parametrize("path", [
    "/machines/" + "a" * 5000, "/machines/..", "/machines/../../etc/passwd", "/machines/mdc1:%00",
    "/machines/mdc1:t%C3%A9st", "/machines/a:b:c", "/machines/mdc1:", "/machines/:host",
    "/machines/mdc1:t 1", "/machines/%2e%2e", "/machines/mdc1:t-linux64-ms-100?x=1",
    "/nothing-here", "/machines/mdc1:t-linux64-ms-100/extra",
])
def test_hostile_paths_get_a_json_4xx_never_a_500(client, fleet, path):
    response = client.get(path)
    assert 400 <= response.status_code < 500
    assert response.mimetype == "application/json" and "error" in response.get_json()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_write_methods_are_a_json_405(client, fleet, method):
    response = client.open("/machines", method=method)
    assert response.status_code == 405 and response.get_json()["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_head_and_options_are_allowed(client, fleet):
    assert client.head("/machines").status_code == 200
    assert client.options("/machines").status_code == 200


def test_redis_down_is_a_503_json_but_lbheartbeat_stays_up(client, fleet, fake_server):
    fake_server.connected = False
    for path in ("/machines", "/machines/mdc1:t-linux64-ms-100", "/summary"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.get_json()["error"] == "redis_unavailable"
    assert client.get("/__lbheartbeat__").status_code == 200
    heartbeat = client.get("/__heartbeat__")
    assert heartbeat.status_code == 500
    assert heartbeat.get_json()["checks"]["redis"] == "error"


def test_heartbeat_is_ok_while_the_listener_reports(client, fleet):
    fleet.taskcluster_polled(NOW)
    body = client.get("/__heartbeat__")
    assert body.status_code == 200
    assert body.get_json()["status"] == "ok"
    assert body.get_json()["checks"] == {"redis": "ok", "listener": "ok", "taskcluster": "ok"}


def test_heartbeat_fails_naming_a_silent_listener(app_factory, fleet):
    client = app_factory(now=NOW + timedelta(minutes=10)).test_client()
    response = client.get("/__heartbeat__")
    assert response.status_code == 500
    body = response.get_json()
    assert body["status"] == "error" and body["checks"]["listener"] == "error"
    assert "no listener heartbeat" in body["details"]["listener"]["problem"]


def test_heartbeat_warns_when_the_listener_lives_but_receives_nothing(app_factory, fleet):
    later = NOW + timedelta(hours=7)
    fleet.listener_heartbeat(later)
    response = app_factory(now=later).test_client().get("/__heartbeat__")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "warning" and body["checks"]["listener"] == "warning"
    assert "no message for 25200s" in body["details"]["listener"]["problem"]


def test_heartbeat_fails_when_no_listener_ever_ran(client):
    body = client.get("/__heartbeat__").get_json()
    assert body["checks"] == {"redis": "ok", "listener": "error", "taskcluster": "warning"}


def test_version_follows_the_dockerflow_convention(client):
    body = client.get("/__version__").get_json()
    assert set(body) >= {"source", "version", "commit", "build"}


def test_summary_counts_per_datacenter_and_worker_type(client, fleet):
    fleet.record([PendingEvent("releng-hardware", "gecko-t-linux-talos", "PPPPPPPPQAGAAAAAAAAAAA", 0,
                               NOW, DEADLINE)], now=NOW)
    body = client.get("/summary").get_json()
    groups = {(g["datacenter"], g["worker_type"]): g for g in body["groups"]}
    assert groups[("mdc1", "gecko-t-linux-talos")] == {
        "datacenter": "mdc1", "worker_type": "gecko-t-linux-talos", "provisioner": "releng-hardware",
        "total": 2, "expected": 0, "never_seen": 0, "seen_within_1h": 1, "stale": 1,
        "last_task_exception": 1, "idle_with_work_waiting": 1, "quarantined": 0, "pending_tasks": 1,
        "problems": {**dict.fromkeys(PROBLEMS, 0), "idle_with_work_waiting": 1, "stale": 1},
    }
    assert groups[("mdc2", "gecko-t-win10-64-hw")]["pending_tasks"] == 0
    assert body["totals"]["total"] == 4 and body["totals"]["stale"] == 2
    assert body["pending_tasks"] == {"releng-hardware/gecko-t-linux-talos": 1}


def test_summary_threshold_can_be_overridden_per_request(client, fleet):
    assert client.get("/summary?stale_after=1h").get_json()["totals"]["stale"] == 3
    assert client.get("/summary?stale_after=never").status_code == 400


def test_stale_machine_with_work_waiting_is_flagged(client, fleet):
    fleet.record([PendingEvent("releng-hardware", "gecko-t-linux-talos", "PPPPPPPPQAGAAAAAAAAAAA", 0,
                               NOW, DEADLINE)], now=NOW)
    flagged = {m["id"] for m in client.get("/machines").get_json() if m["idle_with_work_waiting"]}
    assert flagged == {"mdc1:t-linux64-ms-101", "mdc2:t-linux64-ms-100"}


def test_configured_stale_threshold_and_taskcluster_root(app_factory, fleet):
    config = make_config(stale_after=60.0, taskcluster_root_url="https://tc.example")
    body = app_factory(config).test_client().get("/machines/mdc1:t-linux64-ms-100").get_json()
    assert body["stale"] is True
    assert body["last_task"]["url"] == "https://tc.example/tasks/AAAAAAAAQAGAAAAAAAAAAA"


def test_csv_by_parameter_or_accept_header(client, fleet):
    for response in (client.get("/machines?format=csv&datacenter=mdc2"),
                     client.get("/machines?datacenter=mdc2", headers={"Accept": "text/csv"})):
        assert response.mimetype == "text/csv"
        rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
        assert [row["id"] for row in rows] == ["mdc2:t-linux64-ms-100", "mdc2:t-w1064-ms-281"]
        assert rows[1]["last_task_state"] == "failed"


def test_etag_gives_304_until_the_data_changes(client, fleet, store):
    first = client.get("/machines")
    etag = first.headers["ETag"]
    assert client.get("/machines", headers={"If-None-Match": etag}).status_code == 304
    seen(store, "t-new-1", ago=timedelta(minutes=1), task="ZZZZZZZZQAGAAAAAAAAAAA")
    assert client.get("/machines", headers={"If-None-Match": etag}).status_code == 200
    summary_etag = client.get("/summary").headers["ETag"]
    assert client.get("/summary", headers={"If-None-Match": summary_etag}).status_code == 304


def test_read_only_json_endpoints_allow_any_origin(client, fleet):
    for path in ("/machines", "/machines/mdc1:t-linux64-ms-100", "/summary", "/machines/nope:nope"):
        assert client.get(path).headers["Access-Control-Allow-Origin"] == "*"


def test_etag_survives_passing_time_until_a_machine_turns_stale(app_factory, fleet):
    etag = app_factory(now=NOW).test_client().get("/machines").headers["ETag"]
    later = app_factory(now=NOW + timedelta(minutes=30)).test_client()
    assert later.get("/machines", headers={"If-None-Match": etag}).status_code == 304
    # the mdc2 Windows machine (seen 2h ago) crosses the 6h threshold
    much_later = app_factory(now=NOW + timedelta(hours=4, minutes=1)).test_client()
    response = much_later.get("/machines", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert any(m["stale"] and m["id"] == "mdc2:t-w1064-ms-281" for m in response.get_json())


def test_summary_keeps_provisioners_sharing_a_worker_type_apart(client, store):
    from releng_hardware.core.events import WorkerEvent
    for provisioner, host in (("releng-hardware", "t-linux64-ms-100"), ("other-hw", "t-linux64-ms-900")):
        store.record([WorkerEvent("mdc1", host, provisioner, "gecko-t-linux-talos",
                                  "AAAAAAAAQAGAAAAAAAAAAA", 0, "completed", "completed",
                                  NOW - timedelta(minutes=5), DEADLINE, True)], now=NOW)
    store.record([PendingEvent("other-hw", "gecko-t-linux-talos", f"{letter * 8}QAGAAAAAAAAAAA", 0,
                               NOW, DEADLINE) for letter in "PQR"], now=NOW)
    groups = client.get("/summary").get_json()["groups"]
    assert [(g["provisioner"], g["total"], g["pending_tasks"]) for g in groups] == [
        ("other-hw", 1, 3), ("releng-hardware", 1, 0)]


@pytest.mark.parametrize("error", [
    redis.ReadOnlyError("You can't write against a read only replica."),
    redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
    redis.AuthenticationError("NOAUTH Authentication required."),
])
def test_every_redis_error_is_a_503_json(client, fleet, store, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(store.redis, "execute_command", fail)
    monkeypatch.setattr(store.redis, "pipeline", fail)
    for path in ("/machines", "/machines/mdc1:t-linux64-ms-100", "/summary", "/metrics"):
        response = client.get(path)
        assert response.status_code == 503, (path, response.get_data(as_text=True)[:200])
        assert response.get_json()["error"] == "redis_unavailable"
    heartbeat = client.get("/__heartbeat__")
    assert heartbeat.status_code == 500
    assert heartbeat.get_json()["checks"] == {"redis": "error"}


@pytest.mark.parametrize("remote, served", [
    ("https://x-access-token:ghp_secret@github.com/mozilla/releng-hardware.git",
     "https://github.com/mozilla/releng-hardware.git"),
    ("https://ghp_secret@github.com:443/mozilla/releng-hardware?token=ghp_secret",
     "https://github.com:443/mozilla/releng-hardware"),
    ("git@github.com:mozilla/releng-hardware.git", "github.com:mozilla/releng-hardware.git"),
    ("/srv/git/releng-hardware", ""),
])
def test_version_source_never_carries_credentials(remote, served):
    from releng_hardware.web.dockerflow import public_source_url
    assert public_source_url(remote) == served


def test_version_endpoint_serves_the_origin_without_its_token(tmp_path, fake_redis):
    import subprocess
    from releng_hardware.web.dockerflow import load_version
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin",
                    "https://user:ghp_secret@example.com/releng-hardware.git"], check=True)
    version = load_version(tmp_path)
    assert version["source"] == "https://example.com/releng-hardware.git"
    assert "ghp_secret" not in str(version)


def test_version_json_written_by_a_build_is_served_without_a_token(tmp_path):
    import json
    from releng_hardware.web.dockerflow import load_version
    (tmp_path / "version.json").write_text(json.dumps({
        "source": "https://x-access-token:ghp_secret@github.com/mozilla/releng-hardware",
        "version": "1.2.3", "commit": "abc", "build": "42"}))
    assert load_version(tmp_path) == {"source": "https://github.com/mozilla/releng-hardware",
                                      "version": "1.2.3", "commit": "abc", "build": "42"}


RECENT = (NOW - timedelta(seconds=30)).isoformat(timespec="microseconds")


@pytest.mark.parametrize("heartbeat_at, last_message_at, status, problem", [
    ("zzzz", RECENT, "ok", None),  # garbage sorts after every date: it must not win
    ("\x00", RECENT, "ok", None),
    ("zzzz", None, "error", "unreadable"),
    ("2026-13-45T00:00:00", "not a time", "error", "unreadable"),
    ("9999-12-31T23:59:59.999999", None, "error", "in the future"),
    ("9999-12-31T23:59:59.999999", RECENT, "error", "in the future"),
    ("x" * 100_000, None, "error", "unreadable"),
])
def test_heartbeat_keeps_its_shape_with_a_corrupt_stored_time(client, fake_redis, heartbeat_at,
                                                              last_message_at, status, problem):
    fake_redis.hset("listener", mapping={"heartbeat_at": heartbeat_at, **(
        {"last_message_at": last_message_at} if last_message_at else {})})
    Store(fake_redis).taskcluster_polled(NOW)  # only the listener's times are at fault
    response = client.get("/__heartbeat__")
    body = response.get_json()
    assert set(body) == {"status", "checks", "details"}
    assert (body["status"], response.status_code) == (status, 500 if status == "error" else 200)
    assert body["checks"] == {"redis": "ok", "listener": status, "taskcluster": "ok"}
    if problem:
        assert problem in body["details"]["listener"]["problem"]
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("url", [
    "/machines?datacenter=" + "x" * 3000, "/machines/" + "x" * 3000, "/summary?" + "a=1&" * 600,
    "/nothing-here/" + "x" * 3000, "/metrics?" + "x" * 3000, "/__heartbeat__?" + "x" * 3000,
])
def test_an_overlong_url_is_a_json_414_before_anything_is_parsed(client, fleet, url):
    response = client.get(url)
    assert response.status_code == 414 and response.mimetype == "application/json"
    assert response.get_json()["error"] == "request_uri_too_long"
    assert len(response.get_data()) < 200  # nothing of the URL is echoed


def test_the_dashboard_answers_an_overlong_url_with_its_own_414_page(client, fleet):
    response = client.get("/?datacenter=" + "x" * 3000)
    assert response.status_code == 414 and response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


INJECTED = "x%0d%0aSet-Cookie:%20stolen=1%0d%0a%0d%0a<script>alert(1)</script>"


@pytest.mark.parametrize("url", [
    f"/machines?datacenter={INJECTED}", f"/machines?sort={INJECTED}", f"/machines?format={INJECTED}",
    f"/machines?{INJECTED}=1", f"/machines/{INJECTED}", f"/machines/mdc1:{INJECTED}",
    f"/summary?stale_after={INJECTED}", f"/?datacenter={INJECTED}", f"/?{INJECTED}=1",
    f"/machine/{INJECTED}", f"/machine/mdc1:t-1?{INJECTED}=1",
    f"/{INJECTED}", f"/metrics?{INJECTED}",
])
def test_parameters_echoed_back_never_reach_a_header_or_raw_html(client, fleet, url):
    response = client.get(url)
    assert response.status_code < 500
    for name, value in response.headers.items():
        assert "stolen" not in name + value and "\n" not in value and "\r" not in value, name
    if response.mimetype == "text/html":
        assert "<script>alert" not in response.get_data(as_text=True)
    else:  # JSON (never sniffed as HTML) or the metrics text, which ignores queries
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_app_keeps_its_store_settings_clock_and_version_in_one_frozen_state(app_factory,
                                                                                 fake_redis):
    import dataclasses

    from releng_hardware.web.appstate import AppState, app_state

    config = make_config(stale_after=3600.0)
    app = app_factory(config, now=NOW + timedelta(hours=2))
    with app.app_context():
        state = app_state()
    assert isinstance(state, AppState)
    assert state.config is config and state.clock() == NOW + timedelta(hours=2)
    assert state.store.redis is fake_redis
    assert state.version == app.test_client().get("/__version__").get_json()
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.config = make_config()  # type: ignore[misc]
