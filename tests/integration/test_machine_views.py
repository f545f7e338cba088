"""GET /machines with every field spliced from the machine index's views, on the real Redis: byte
for byte (and ETag for ETag) the answer built machine by machine, after varied traffic, an
inventory, quarantines, a preload, a backfill, more writes not yet judged, a changed root URL,
retention, and two web processes reading at once."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import orjson
import pytest

from releng_hardware.web.app import api
from releng_hardware.core.events import WorkerEvent
from releng_hardware.views.fleet import MachineQuery, select
from releng_hardware.core.records import BackfillItem, Quarantine
from releng_hardware.views.reads import read_fleet
from releng_hardware.store.index import JudgementWrite
from releng_hardware.store.machines import Store, open_redis
from releng_hardware.core.times import format_lastseen
from releng_hardware.web.app import create_app
from tests.conftest import REDIS_URL, make_config
from tests.index_exactness import (NOW, PROVISIONER, WORKER_TYPES, assert_exact, deliver,
                                   random_traffic)


@pytest.fixture
def config(redis_prefix: str) -> Any:
    return make_config(redis_key_prefix=redis_prefix, provisioner_ids=(PROVISIONER,),
                       taskcluster_root_url="https://tc.example.com")


def client_of(redis: Any, config: Any) -> Any:
    app = create_app(config, redis=redis, clock=lambda: NOW)
    app.testing = True
    return app.test_client()


def machine_by_machine(client: Any, path: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The same request answered as before the views: read_fleet and machine_json per machine."""
    with monkeypatch.context() as patch:
        patch.setattr(api, "read_machines_from_views", lambda *args, **kwargs: None)
        return client.get(path)


def assert_same_answers(store: Store, config: Any, monkeypatch: pytest.MonkeyPatch) -> bytes:
    client = client_of(store.redis, config)
    for path in ("/machines", "/machines?sort=-machine", "/machines?sort=machine"):
        spliced = client.get(path)
        built = machine_by_machine(client, path, monkeypatch)
        assert spliced.status_code == built.status_code == 200
        assert spliced.data == built.data
        assert spliced.headers["ETag"] == built.headers["ETag"]
    # and the answer is what the views' definition says: machine_json of each machine, encoded
    fleet = read_fleet(store, config, NOW, with_never_seen=False)
    body = client.get("/machines").data
    assert body == orjson.dumps(select(fleet.machines, MachineQuery()))
    # every machine judged, with its view
    assert store.redis.hlen(store.keys.index_unjudged) == 0
    assert store.redis.hlen(store.keys.index_views) == len(fleet.machines)
    return body


def test_the_views_answer_byte_for_byte_what_machine_json_answers(real_store, config, monkeypatch):
    rng = random.Random(4)
    deliver(real_store, rng, random_traffic(rng, hosts=60, runs=700))
    # a run started 5 hours ago and still running: hung
    started = NOW - timedelta(hours=5)
    real_store.record([WorkerEvent("mdc2", "t-hung", PROVISIONER, WORKER_TYPES[0],
                                   "HUNGAAAAQAGAAAAAAAAAAA", 0, "running", None, started,
                                   NOW + timedelta(days=1), True, started, started)], now=NOW)
    assert_same_answers(real_store, config, monkeypatch)
    seen = sorted(machine.machine_id for machine in real_store.machines())
    # an inventory listing some machines (the others are not_in_inventory), and some never seen
    listed = {machine_id: None for machine_id in seen[:25]}
    listed.update({f"mdc1:t-never-{n}": WORKER_TYPES[n % 3] for n in range(4)})
    real_store.update_inventory(lambda current: listed)
    until = format_lastseen(NOW + timedelta(days=1))
    for machine_id in (seen[0], seen[30], "mdc1:t-never-1"):
        real_store.set_quarantine(machine_id, Quarantine(until, "bad disk \u00e9", "someone",
                                                         PROVISIONER))
    real_store.set_quarantine(seen[1], Quarantine(format_lastseen(NOW - timedelta(hours=1)),
                                                  None, None, PROVISIONER))  # over already
    # a machine preloaded (no record) and one backfilled from Taskcluster's worker list
    real_store.preload({"mdc2:t-preloaded": NOW - timedelta(hours=9),
                        seen[5]: NOW - timedelta(minutes=1)})
    real_store.backfill([BackfillItem("mdc1:t-backfilled", NOW - timedelta(minutes=2),
                                      NOW - timedelta(days=3), PROVISIONER, WORKER_TYPES[2])])
    body = assert_same_answers(real_store, config, monkeypatch)
    machines = orjson.loads(body)
    problems = {code for machine in machines for code in machine["problems"]}
    # the comparison compares every kind of field that changes with time
    assert {"stale", "idle_with_work_waiting", "hung_task", "not_in_inventory",
            "fails_where_others_pass", "lost_mid_task"} <= problems
    assert sum(machine["quarantine"] is not None for machine in machines) == 2
    assert any(machine["last_task"] is None for machine in machines)  # the preloaded one
    assert any(machine["source"] is not None for machine in machines)  # the backfilled one
    # more writes, not yet judged: the read judges them, then answers as before
    deliver(real_store, rng, random_traffic(rng, hosts=70, runs=150))
    assert real_store.redis.hlen(real_store.keys.index_unjudged) > 0
    assert_same_answers(real_store, config, monkeypatch)
    assert_exact(real_store, config)  # /summary from the same index is still exact


def test_two_web_processes_reading_at_once_both_answer_exactly(real_store, config, monkeypatch,
                                                                redis_prefix):
    rng = random.Random(8)
    deliver(real_store, rng, random_traffic(rng, hosts=50, runs=500))
    client_of(real_store.redis, config).get("/machines")  # every machine judged
    deliver(real_store, rng, random_traffic(rng, hosts=60, runs=200))  # some unjudged again
    assert real_store.redis.hlen(real_store.keys.index_unjudged) > 0
    bodies: list[bytes] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def read() -> None:
        redis = open_redis(REDIS_URL)  # its own connection, as another process has
        try:
            client = client_of(redis, config)
            start.wait()
            for _ in range(3):
                bodies.append(client.get("/machines").data)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            redis.close()

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert not errors
    expected = assert_same_answers(real_store, config, monkeypatch)
    assert len(bodies) == 6 and all(body == expected for body in bodies)
    assert_exact(real_store, config)


def test_a_new_root_url_or_retention_leaves_no_view_behind(real_store, config, monkeypatch,
                                                           redis_prefix):
    rng = random.Random(6)
    deliver(real_store, rng, random_traffic(rng, hosts=40, runs=400))
    assert_same_answers(real_store, config, monkeypatch)
    moved = make_config(redis_key_prefix=redis_prefix, provisioner_ids=(PROVISIONER,),
                        taskcluster_root_url="https://moved.example.com")
    body = assert_same_answers(real_store, moved, monkeypatch)
    assert b"https://moved.example.com/tasks/" in body and b"tc.example.com" not in body
    before = set(real_store.lastseen_by_machine())
    cutoff = NOW - timedelta(hours=6, minutes=30)
    while not real_store.remove_expired(cutoff, 15).wrapped:
        pass
    removed = before - set(real_store.lastseen_by_machine())
    assert removed
    assert not any(real_store.redis.hexists(real_store.keys.index_views, machine_id)
                   for machine_id in removed)
    assert_same_answers(real_store, moved, monkeypatch)


def test_a_judgement_stored_without_a_view_falls_back_to_machine_json(real_store, config,
                                                                      monkeypatch):
    rng = random.Random(2)
    deliver(real_store, rng, random_traffic(rng, hosts=20, runs=200))
    assert_same_answers(real_store, config, monkeypatch)
    machine_id = next(iter(real_store.lastseen_by_machine()))
    # a judging process that stores no view (Store.judge): its machine's old view goes
    generation = "1"
    real_store.redis.hset(real_store.keys.index_unjudged, machine_id, generation)
    judgement = real_store.redis.hget(real_store.keys.index_judged, machine_id)
    assert real_store.judge([JudgementWrite(machine_id, generation, judgement)]) == 1
    assert not real_store.redis.hexists(real_store.keys.index_views, machine_id)
    client = client_of(real_store.redis, config)
    assert client.get("/machines").data == machine_by_machine(client, "/machines",
                                                               monkeypatch).data


def test_a_full_memory_still_answers_from_the_views(own_redis, monkeypatch):
    redis = own_redis.client()
    config = make_config(provisioner_ids=(PROVISIONER,))
    store = Store(redis)
    rng = random.Random(9)
    deliver(store, rng, random_traffic(rng, hosts=30, runs=300))
    client = client_of(redis, config)
    client.get("/machines")  # the index built, every machine judged
    deliver(store, rng, random_traffic(rng, hosts=30, runs=60))
    unjudged = redis.hlen(store.keys.index_unjudged)
    assert unjudged > 0
    redis.config_set("maxmemory", "1")  # every write now gets OOM; the views are only read
    spliced = client.get("/machines")
    assert spliced.status_code == 200
    assert spliced.data == machine_by_machine(client, "/machines", monkeypatch).data
    assert redis.hlen(store.keys.index_unjudged) == unjudged  # nothing could be stored
    redis.close()
