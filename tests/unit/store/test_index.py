"""The machine index and the machine order (store.index) on fakeredis: their builds and what a
new build leaves of an old one."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson

from releng_hardware.core.events import WorkerEvent
from releng_hardware.store.index import ORDER_DIGEST
from releng_hardware.store.keys import FAMILIES, GROUP_SEPARATOR
from releng_hardware.store.machines import Store
from tests.conftest import stored_keys

T0 = datetime(2026, 11, 20, 12, 0, 0)


def running(host: str, worker_type: str, minutes: float = 0) -> WorkerEvent:
    """A run starting on `host` (so the machine is in its group's running order too)."""
    task_id = f"TASK{host[-4:].replace('-', 'A')}QAGAAAAAAAAAAA"
    return WorkerEvent("mdc1", host, "releng-hardware", worker_type, task_id, 0, "running", None,
                       T0 + timedelta(minutes=minutes), None, True, None)


def group(worker_type: str) -> str:
    return GROUP_SEPARATOR.join(("mdc1", "releng-hardware", worker_type))


def index_group_keys(store: Store) -> set[str]:
    """The index's per-group keys present, without the prefix."""
    families = (FAMILIES["index_seen"], FAMILIES["index_running"])
    return {key.removeprefix(store.prefix) for key in stored_keys(store)
            if key.removeprefix(store.prefix).startswith(families)}


def test_a_rebuild_leaves_no_group_that_no_machine_is_in_anymore(store):
    store.record([running("t-linux64-ms-100", "old-type"), running("t-linux64-ms-101", "old-type")],
                 now=T0)
    store.build_machine_index("release-1")
    assert store.redis.smembers(store.keys.prefix + "index:groups") == {group("old-type")}
    # the machines' group changes without a write the index follows (the rule of a group, or the
    # record, as the release before had it): the new release's rebuild must not keep the old one
    for machine_id, raw in store.redis.hgetall(store.keys.machine_records).items():
        details = orjson.loads(raw)
        details["worker_type"] = "new-type"
        store.redis.hset(store.keys.machine_records, machine_id, orjson.dumps(details).decode())
    store.build_machine_index("release-2", step=1)
    assert store.redis.smembers(store.keys.prefix + "index:groups") == {group("new-type")}
    assert index_group_keys(store) == {FAMILIES["index_seen"] + group("new-type"),
                                       FAMILIES["index_running"] + group("new-type")}
    assert set(store.redis.zrange(store.keys.prefix + FAMILIES["index_seen"] + group("new-type"),
                                  0, -1)) == {"mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101"}


def test_a_rebuild_for_the_same_fingerprint_changes_nothing(store):
    store.record([running("t-linux64-ms-100", "a-type")], now=T0)
    store.build_machine_index("release-1")
    before = {key: store.redis.dump(key) for key in stored_keys(store)}
    store.build_machine_index("release-1")
    assert {key: store.redis.dump(key) for key in stored_keys(store)} == before


def test_a_release_that_makes_the_order_otherwise_builds_it_again(store):
    store.record([running("t-linux64-ms-100", "a-type"), running("t-linux64-ms-101", "a-type")],
                 now=T0)
    store.build_machine_order()
    members = store.redis.zrange(store.keys.machine_order, 0, -1)
    # the order as a release with another member rule left it, complete for its own code
    store.redis.delete(store.keys.machine_order)
    store.redis.zadd(store.keys.machine_order, {"mdc1:t-linux64-ms-100": 0, "stale-member": 0})
    store.redis.set(store.keys.machine_order_state, "done:0123456789abcdef")
    page = store.machine_order_page(None, 10, T0)
    assert [entry.record.machine_id for entry in page.entries] == [
        "mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101"]
    assert store.redis.zrange(store.keys.machine_order, 0, -1) == members
    assert store.redis.get(store.keys.machine_order_state) == "done:" + ORDER_DIGEST


def test_the_order_of_the_release_before_the_digest_is_built_again(store):
    store.record([running("t-linux64-ms-100", "a-type")], now=T0)
    store.redis.delete(store.keys.machine_order)
    store.redis.set(store.keys.machine_order_state, "done")  # as 1.0.0 to this release left it
    assert [entry.record.machine_id for entry in store.machine_order_page(None, 10, T0).entries] \
        == ["mdc1:t-linux64-ms-100"]

