"""Taskcluster's worker state: the real client against the local stand-in, into a fakeredis store."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any, Iterator

import jsonschema_rs
import pytest
import requests
from click.testing import CliRunner

from releng_hardware import cli
from releng_hardware.taskcluster.quarantine import Target, over_the_limit
from releng_hardware.taskcluster.poller import TaskclusterPoller, followed_queues, poll_once
from releng_hardware.tools.fake_taskcluster import FakeTaskcluster
from releng_hardware.core.records import MachineRecord
from releng_hardware.store.machines import Store
from releng_hardware.core.times import format_lastseen
from releng_hardware.taskcluster.client import Credentials, Taskcluster, TaskclusterError, credentials_from_environ
from tests.conftest import FIXTURES, NOW, make_config, seen, stored_keys

SCHEMAS = FIXTURES / "taskcluster-schemas"
PROVISIONER = "releng-hardware"
POOL = "gecko-t-linux-talos"
CLIENT_ID, TOKEN = "project/releng/ops", "s3cr3t-access-token-value"


def schema(name: str) -> Any:
    return jsonschema_rs.validator_for(json.loads((SCHEMAS / f"{name}.json").read_text()),
                                       validate_formats=True)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> Any:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake_tc(clock: Clock) -> Iterator[FakeTaskcluster]:
    with FakeTaskcluster(credentials={CLIENT_ID: (TOKEN, ["queue:quarantine-worker:releng-hardware/*"]),
                                         "nobody": ("nobody-token", [])},
                            clock=clock, stall_seconds=3) as server:
        yield server


def fleet(store: Store, fake_tc: FakeTaskcluster, count: int = 30, quarantined: int = 0) -> None:
    """`count` machines of one pool, seen by the listener and known to the stand-in."""
    for number in range(count):
        host = f"t-linux64-ms-{number:03d}"
        seen(store, host, ago=timedelta(minutes=10), worker_type=POOL)
        fake_tc.add_worker(PROVISIONER, POOL, "mdc1", host, first_claim=NOW - timedelta(days=30),
                           last_active=NOW - timedelta(minutes=40),
                           quarantine_until=NOW + timedelta(days=1) if number < quarantined else None,
                           reason="disk errors" if number < quarantined else None, by="someone")


def client(fake_tc: FakeTaskcluster, **options: Any) -> Taskcluster:
    return Taskcluster(fake_tc.root_url, Credentials(CLIENT_ID, TOKEN), **options)


# -- the stand-in speaks the published schemas ---------------------------------------------

def test_stand_in_documents_are_valid_under_the_published_schemas(fake_tc):
    fake_tc.add_worker(PROVISIONER, POOL, "mdc1", "t-1", first_claim=NOW - timedelta(days=2),
                       last_active=NOW, quarantine_until=NOW + timedelta(hours=1), reason="broken",
                       latest_task=("AAAAAAAAQAGAAAAAAAAAAA", 0))
    fake_tc.add_worker(PROVISIONER, POOL, "mdc1", "t-2", first_claim=NOW - timedelta(days=2))
    base = f"{fake_tc.root_url}/api"
    listing = requests.get(f"{base}/worker-manager/v1/provisioners/{PROVISIONER}/worker-types/{POOL}"
                           "/workers?limit=1", timeout=5).json()
    worker = requests.get(f"{base}/worker-manager/v1/provisioners/{PROVISIONER}/worker-types/{POOL}"
                          "/workers/mdc1/t-1", timeout=5).json()
    client(fake_tc).quarantine(PROVISIONER, POOL, "mdc1", "t-2", NOW + timedelta(days=1), "why")
    put = [entry for entry in fake_tc.requests if entry[0] == "PUT"]
    assert listing["continuationToken"] and len(listing["workers"]) == 1
    schema("worker-manager-list-workers-response").validate(listing)
    schema("queue-worker-response").validate(worker)
    assert worker["quarantineDetails"][0]["quarantineInfo"] == "broken"
    assert put and put[0][2].startswith("Hawk ") and f'id="{CLIENT_ID}"' in put[0][2]
    schema("queue-quarantine-worker-request").validate(
        {"quarantineUntil": "2026-11-21T15:00:00.000Z", "quarantineInfo": "why"})
    with pytest.raises(jsonschema_rs.ValidationError):
        schema("worker-manager-list-workers-response").validate({"workers": [{"workerGroup": "mdc1"}]})


# -- the client --------------------------------------------------------------------------

def test_every_page_is_read(fake_tc):
    for number in range(5):
        fake_tc.add_worker(PROVISIONER, POOL, "mdc1", f"t-{number}", first_claim=NOW,
                           quarantine_until=NOW + timedelta(hours=1))
    workers = client(fake_tc, page_limit=2).list_workers(PROVISIONER, POOL, quarantined=True)
    pages = [path for method, path, _ in fake_tc.requests if path.endswith("/workers")]
    assert [worker.machine_id for worker in workers] == [f"mdc1:t-{n}" for n in range(5)]
    assert len(pages) == 3


@pytest.mark.parametrize("fault, words", [("error", "HTTP 500"), ("garbage", "not a JSON object"),
                                          ("malformed", "without a valid workerGroup and workerId"),
                                          ("stall", "no answer within")])
def test_every_bad_answer_is_one_taskcluster_error_without_the_secret(fake_tc, fault, words):
    fake_tc.add_worker(PROVISIONER, POOL, "mdc1", "t-1", first_claim=NOW)
    fake_tc.fault = fault
    with pytest.raises(TaskclusterError) as caught:
        client(fake_tc, timeout=0.5).list_workers(PROVISIONER, POOL)
    message = str(caught.value)
    assert words in message and "\n" not in message and TOKEN not in message


def test_a_bad_signature_is_refused_by_the_stand_in(fake_tc):
    fake_tc.add_worker(PROVISIONER, POOL, "mdc1", "t-1", first_claim=NOW)
    wrong = Taskcluster(fake_tc.root_url, Credentials(CLIENT_ID, "not-the-token"))
    with pytest.raises(TaskclusterError) as caught:
        wrong.quarantine(PROVISIONER, POOL, "mdc1", "t-1", NOW + timedelta(days=1), "x")
    assert caught.value.status == 401
    assert fake_tc.workers[(PROVISIONER, POOL, "mdc1", "t-1")].quarantine_until is None


def test_credentials_follow_the_taskcluster_environment_variables():
    credentials = credentials_from_environ({"TASKCLUSTER_CLIENT_ID": CLIENT_ID,
                                            "TASKCLUSTER_ACCESS_TOKEN": TOKEN})
    assert credentials == Credentials(CLIENT_ID, TOKEN)
    assert TOKEN not in repr(credentials)
    assert credentials_from_environ({"TASKCLUSTER_CLIENT_ID": CLIENT_ID}) is None


# -- the poll ----------------------------------------------------------------------------

def test_poll_records_each_quarantine_with_reason_and_who(store, fake_tc, config):
    fleet(store, fake_tc, count=8, quarantined=3)
    assert poll_once(store, client(fake_tc, page_limit=1), config, NOW) is None
    quarantines = store.quarantines(NOW)
    assert sorted(quarantines) == [f"mdc1:t-linux64-ms-00{n}" for n in range(3)]
    assert quarantines["mdc1:t-linux64-ms-000"].as_json() == {
        "until": format_lastseen(NOW + timedelta(days=1)), "reason": "disk errors", "by": "someone"}
    assert store.taskcluster_status()["last_good_poll_at"] == format_lastseen(NOW)


def test_a_quarantine_that_ends_is_no_longer_served_and_the_next_poll_drops_it(store, fake_tc, config,
                                                                             clock):
    fleet(store, fake_tc, count=3)
    fake_tc.add_worker(PROVISIONER, POOL, "mdc1", "t-linux64-ms-001", first_claim=NOW,
                       quarantine_until=NOW + timedelta(hours=1), reason="reboot loop")
    poll_once(store, client(fake_tc), config, NOW)
    later = NOW + timedelta(hours=2)
    assert list(store.quarantines(NOW)) == ["mdc1:t-linux64-ms-001"]
    assert store.quarantines(later) == {}
    clock.now = later
    poll_once(store, client(fake_tc), config, later)
    assert store.quarantines() == {}


def test_taskcluster_down_for_several_polls_keeps_the_last_good_state(store, fake_tc, config):
    fleet(store, fake_tc, count=5, quarantined=2)
    poll_once(store, client(fake_tc), config, NOW)
    before = store.quarantines()
    fake_tc.fault = "error"
    for minutes in (5, 10, 15):
        error = poll_once(store, client(fake_tc), config, NOW + timedelta(minutes=minutes))
        assert "HTTP 500" in error
    status = store.taskcluster_status()
    assert store.quarantines() == before
    assert status["last_good_poll_at"] == format_lastseen(NOW)
    assert status["last_poll_at"] == format_lastseen(NOW + timedelta(minutes=15))
    assert (status["consecutive_failures"], status["failures"], status["polls"]) == (3, 3, 4)
    assert "HTTP 500" in status["last_error"]
    fake_tc.fault = None
    poll_once(store, client(fake_tc), config, NOW + timedelta(minutes=20))
    assert store.taskcluster_status()["consecutive_failures"] == 0


def test_listeners_take_turns_and_a_failing_poll_never_raises(store, fake_tc, clock, caplog):
    fleet(store, fake_tc, count=2, quarantined=1)
    config = make_config(taskcluster_poll=300.0)
    first = TaskclusterPoller(store, client(fake_tc), config, clock=clock, holder="a")
    second = TaskclusterPoller(store, client(fake_tc), config, clock=clock, holder="b")
    assert first.run_once() is True
    assert second.run_once() is False
    store.redis.delete(store.keys.taskcluster_turn)  # the turn ran out
    fake_tc.fault = "garbage"
    with caplog.at_level(logging.WARNING):
        assert second.run_once() is True
    assert [record.getMessage().count("\n") for record in caplog.records] == [0]
    assert "the last good state stays" in caplog.records[0].getMessage()


def test_followed_worker_types_come_from_records_and_inventory():
    records = [MachineRecord("mdc1:a", "x", {"provisioner": PROVISIONER, "worker_type": POOL}),
               MachineRecord("mdc1:b", "x", {"provisioner": "other", "worker_type": "elsewhere"}),
               MachineRecord("mdc1:c", "x", {})]
    queues = followed_queues(records, {"mdc2:d": "gecko-t-win", "mdc2:e": None}, (PROVISIONER,))
    assert queues == [(PROVISIONER, POOL), (PROVISIONER, "gecko-t-win")]


# -- the commands ------------------------------------------------------------------------

@pytest.fixture
def run(store, fake_tc, monkeypatch, clock) -> Any:
    monkeypatch.setattr(cli, "open_store", lambda config: store)
    monkeypatch.setattr(cli, "utcnow", clock)  # the commands' now is the stand-in's

    def invoke(*args: str, credentials: tuple[str, str] | None = (CLIENT_ID, TOKEN)) -> Any:
        env = {"TASKCLUSTER_ROOT_URL": fake_tc.root_url, "TASKCLUSTER_CLIENT_ID": None,
               "TASKCLUSTER_ACCESS_TOKEN": None, "TASKCLUSTER_CERTIFICATE": None}
        if credentials:
            env.update(TASKCLUSTER_CLIENT_ID=credentials[0], TASKCLUSTER_ACCESS_TOKEN=credentials[1])
        return CliRunner().invoke(cli.main, list(args), env=env)
    return invoke


def test_quarantine_and_lift_change_taskcluster_and_the_store_at_once(run, store, fake_tc):
    fleet(store, fake_tc)
    result = run("quarantine", "mdc1:t-linux64-ms-004", "t-linux64-ms-007", "--until", "2d",
                 "--reason", "fans")
    worker = fake_tc.workers[(PROVISIONER, POOL, "mdc1", "t-linux64-ms-004")]
    assert result.exit_code == 0, result.output
    assert result.output.count("quarantined until") == 2
    assert worker.quarantine_details[-1]["quarantineInfo"] == "fans"
    assert worker.quarantine_details[-1]["clientId"] == CLIENT_ID
    assert store.quarantines()["mdc1:t-linux64-ms-004"].by == CLIENT_ID
    lifted = run("lift", "mdc1:t-linux64-ms-004")
    assert lifted.exit_code == 0 and "lifted" in lifted.output
    assert "mdc1:t-linux64-ms-004" not in store.quarantines()
    assert list(store.quarantines()) == ["mdc1:t-linux64-ms-007"]


def test_a_lifted_quarantine_stays_lifted_after_the_next_poll(run, store, fake_tc, config):
    fleet(store, fake_tc, count=10, quarantined=1)
    poll_once(store, client(fake_tc), config, NOW)
    assert run("lift", "mdc1:t-linux64-ms-000").exit_code == 0
    poll_once(store, client(fake_tc), config, NOW + timedelta(minutes=5))
    assert store.quarantines() == {}


def test_the_safety_limit_refuses_without_force_and_changes_nothing(run, store, fake_tc):
    fleet(store, fake_tc, count=30)
    refused = run("quarantine", "--worker-type", POOL, "--reason", "bad push")
    few = run("quarantine", *(f"t-linux64-ms-00{n}" for n in range(4)), "--reason", "bad push")
    assert refused.exit_code == 1 and "QUARANTINE_MAX" in refused.output
    assert few.exit_code == 1 and "more than a tenth of the pool" in few.output
    assert not [entry for entry in fake_tc.requests if entry[0] == "PUT"]
    assert store.quarantines() == {}
    forced = run("quarantine", *(f"t-linux64-ms-00{n}" for n in range(4)), "--reason", "x", "--force")
    assert forced.exit_code == 0 and len(store.quarantines()) == 4


def test_the_limit_counts_pools_but_always_allows_one_machine():
    machines = [{"worker_type": "small"}] * 3 + [{"worker_type": "big"}] * 40
    one = [Target("mdc1:a", PROVISIONER, "small", "mdc1", "a")]
    two = one + [Target("mdc1:b", PROVISIONER, "small", "mdc1", "b")]
    big = [Target(f"mdc1:{n}", PROVISIONER, "big", "mdc1", str(n)) for n in range(4)]
    assert over_the_limit(one, machines, 5) is None
    assert "tenth" in over_the_limit(two, machines, 5)
    assert over_the_limit(big, machines, 5) is None
    assert "QUARANTINE_MAX" in over_the_limit(big * 2, machines, 5)


def test_dry_run_changes_nothing(run, store, fake_tc):
    fleet(store, fake_tc, count=10)
    result = run("quarantine", "--problem", "any", "t-linux64-ms-001", "--reason", "x", "--dry-run")
    assert result.exit_code == 1 and "no machine to change" in result.output  # it has no problem
    result = run("quarantine", "t-linux64-ms-001", "--reason", "x", "--dry-run")
    assert result.exit_code == 0 and "would be quarantined" in result.output
    assert not [entry for entry in fake_tc.requests if entry[0] == "PUT"] and store.quarantines() == {}


def test_without_credentials_one_line_names_the_scope_and_nothing_changes(run, store, fake_tc):
    fleet(store, fake_tc, count=10)
    result = run("quarantine", "mdc1:t-linux64-ms-001", "--reason", "x", credentials=None)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert f"queue:quarantine-worker:{PROVISIONER}/{POOL}/mdc1/t-linux64-ms-001" in result.output
    assert not fake_tc.requests and store.quarantines() == {}


def test_credentials_lacking_the_scope_name_it_and_stop(run, store, fake_tc):
    fleet(store, fake_tc, count=20)
    result = run("quarantine", "mdc1:t-linux64-ms-001", "mdc1:t-linux64-ms-002", "--reason", "x",
                 credentials=("nobody", "nobody-token"))
    assert result.exit_code == 1
    assert f"lack scope queue:quarantine-worker:{PROVISIONER}/{POOL}/mdc1/t-linux64-ms-001" in result.output
    assert "1 more machines not tried" in result.output
    assert all(worker.quarantine_until is None for worker in fake_tc.workers.values())
    assert store.quarantines() == {}


def test_backfill_never_moves_lastseen_back_and_marks_machines_known_only_from_taskcluster(
        run, store, fake_tc):
    seen(store, "t-linux64-ms-001", ago=timedelta(minutes=5), worker_type=POOL)
    store.update_inventory(lambda current: {"mdc1:t-linux64-ms-001": POOL, "mdc1:t-dead-1": POOL})
    for host in ("t-linux64-ms-001", "t-dead-1"):
        fake_tc.add_worker(PROVISIONER, POOL, "mdc1", host, first_claim=NOW - timedelta(days=90),
                           last_active=NOW - timedelta(days=3))
    fake_tc.add_worker(PROVISIONER, POOL, "mdc1", "t-never-active", first_claim=NOW)
    dry = run("backfill", "--dry-run")
    assert dry.exit_code == 0 and "nothing written" in dry.output and store.machine("mdc1:t-dead-1") is None
    result = run("backfill")
    alive, dead = store.machine("mdc1:t-linux64-ms-001"), store.machine("mdc1:t-dead-1")
    assert result.exit_code == 0, result.output
    assert "3 workers of 1 worker types read, 1 without lastDateActive: 1 written, 1 kept" in result.output
    assert alive.lastseen == format_lastseen(NOW - timedelta(minutes=5))
    assert "source" not in alive.details
    assert dead.lastseen == format_lastseen(NOW - timedelta(days=3))
    assert dead.details["firstseen"] == format_lastseen(NOW - timedelta(days=90))
    assert (dead.details["source"], dead.details["worker_type"]) == ("taskcluster", POOL)
    seen(store, "t-dead-1", ago=timedelta(minutes=1), worker_type=POOL)
    assert "source" not in store.machine("mdc1:t-dead-1").details


def test_no_credential_in_any_log_line_or_stored_value(run, store, fake_tc, config, caplog):
    fleet(store, fake_tc, count=20, quarantined=2)
    with caplog.at_level(logging.DEBUG):
        poll_once(store, client(fake_tc), config, NOW)
        run("quarantine", "mdc1:t-linux64-ms-010", "--reason", "x")
        run("backfill")
        fake_tc.fault = "error"
        poll_once(store, client(fake_tc), config, NOW)
    stored = [json.dumps(store.redis.dump(key) and _value(store, key)) for key in stored_keys(store)]
    assert caplog.records and stored
    assert not [record for record in caplog.records if TOKEN in record.getMessage()]
    assert not [value for value in stored if TOKEN in value]
    assert CLIENT_ID in "".join(stored)  # who quarantined is recorded, the secret is not


def _value(store: Store, key: str) -> Any:
    kind = store.redis.type(key)
    return {"hash": store.redis.hgetall, "string": store.redis.get, "set": lambda k: sorted(store.redis.smembers(k)),
            "zset": lambda k: store.redis.zrange(k, 0, -1)}[kind](key)
