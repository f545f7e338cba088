"""The Taskcluster scripts of the store on the real Redis: quarantines replaced per worker type,
backfill all or nothing and never backwards, the poll's turn, and the listener dropping `source`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from releng_hardware.taskcluster.poller import poll_once
from releng_hardware.tools.fake_taskcluster import FakeTaskcluster
from releng_hardware.core.records import BackfillItem, Quarantine
from releng_hardware.core.times import format_lastseen
from releng_hardware.taskcluster.client import Taskcluster
from tests.conftest import NOW, make_config, seen

pytestmark = pytest.mark.integration

POOL = "gecko-t-linux-talos"
UNTIL = format_lastseen(NOW + timedelta(days=1))


def test_quarantines_are_replaced_per_worker_type(real_store):
    other = {"mdc2:t-w-1": Quarantine(UNTIL, "x", "ops", "")}
    real_store.replace_quarantines("releng-hardware/win", other)
    real_store.replace_quarantines(f"releng-hardware/{POOL}", {
        "mdc1:a": Quarantine(UNTIL, "disk", "ops", ""), "mdc1:b": Quarantine(UNTIL, None, None, "")})
    version = real_store.data_version()
    real_store.replace_quarantines(f"releng-hardware/{POOL}", {"mdc1:b": Quarantine(UNTIL, None, None, "")})
    assert sorted(real_store.quarantines()) == ["mdc1:b", "mdc2:t-w-1"]
    assert real_store.quarantines()["mdc1:b"].reason is None
    assert real_store.data_version() == version + 1
    assert real_store.replace_quarantines(f"releng-hardware/{POOL}",
                                          {"mdc1:b": Quarantine(UNTIL, None, None, "")}) == 0


def test_backfill_never_moves_lastseen_back_and_the_listener_drops_source(real_store):
    seen(real_store, "t-alive", ago=timedelta(minutes=5), worker_type=POOL)
    written, kept = real_store.backfill([
        BackfillItem("mdc1:t-alive", NOW - timedelta(hours=2), NOW - timedelta(days=9), "releng-hardware", POOL),
        BackfillItem("mdc1:t-dead", NOW - timedelta(days=4), NOW - timedelta(days=9), "releng-hardware", POOL)])
    alive, dead = real_store.machine("mdc1:t-alive"), real_store.machine("mdc1:t-dead")
    assert (written, kept) == (1, 1)
    assert alive.lastseen == format_lastseen(NOW - timedelta(minutes=5)) and "source" not in alive.details
    assert dead.details["source"] == "taskcluster" and dead.details["provisioner"] == "releng-hardware"
    again = real_store.backfill([BackfillItem("mdc1:t-dead", NOW - timedelta(days=5), None,
                                              "releng-hardware", POOL)])
    assert again == (0, 1) and real_store.machine("mdc1:t-dead").lastseen == dead.lastseen
    seen(real_store, "t-dead", ago=timedelta(minutes=1), worker_type=POOL)
    assert "source" not in real_store.machine("mdc1:t-dead").details


def test_only_one_poller_takes_a_turn(real_store):
    assert real_store.take_taskcluster_turn("a", 30) is True
    assert real_store.take_taskcluster_turn("b", 30) is False


def test_a_poll_through_the_client_lands_in_real_redis(real_store):
    seen(real_store, "t-1", ago=timedelta(minutes=5), worker_type=POOL)
    with FakeTaskcluster(clock=lambda: NOW) as fake_tc:
        fake_tc.add_worker("releng-hardware", POOL, "mdc1", "t-1", first_claim=NOW - timedelta(days=1),
                           quarantine_until=NOW + timedelta(days=1), reason="fans")
        assert poll_once(real_store, Taskcluster(fake_tc.root_url), make_config(), NOW) is None
    assert real_store.quarantines(NOW)["mdc1:t-1"].reason == "fans"
    assert real_store.taskcluster_status()["polls"] == 1
