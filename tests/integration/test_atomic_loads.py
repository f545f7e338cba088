"""Loads are all or nothing, also when Redis or the link to it fails in the middle."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from typing import Iterator

import pytest
import redis

from releng_hardware.store.machines import Store, open_redis
from tests.conftest import ROOT
from tests.integration.support import CuttingProxy, RedisServer

MACHINES = 100_000
KNOWN = ("mdc1:t-host-7", "2026-11-20T09:00:00.000000")
CUT_AFTER = 1_000_000  # bytes: a fifth of the load reaches Redis before the link breaks


def lastseen_by_machine() -> dict[str, datetime]:
    return {f"mdc{i % 3}:t-host-{i}": datetime(2026, 11, 20, 8, 0, i % 60) for i in range(MACHINES)}


def as_machines_json(rows: dict[str, datetime]) -> bytes:
    return json.dumps([{"datacenter": machine_id.split(":")[0], "machine": machine_id.split(":")[1],
                        "lastseen": moment.isoformat()} for machine_id, moment in rows.items()]).encode()


@pytest.fixture
def loaded_redis(own_redis: RedisServer) -> Iterator[redis.Redis]:
    """The test's own Redis, holding one machine and a data version before the load."""
    client = own_redis.client()
    client.hset("machines", *KNOWN)
    client.set("version", 1)
    yield client
    client.close()


@pytest.fixture
def cut_link(own_redis: RedisServer) -> Iterator[CuttingProxy]:
    """A link to the test's Redis that breaks after CUT_AFTER bytes."""
    proxy = CuttingProxy(own_redis.port, CUT_AFTER)
    yield proxy
    proxy.close()


def unchanged(client: redis.Redis) -> bool:
    return client.hgetall("machines") == dict([KNOWN]) and client.get("version") == "1"


def preload_command(redis_url: str, raw: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "preload_redis.py"], cwd=ROOT, input=raw,
                          env={"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url},
                          capture_output=True, timeout=120)


def test_a_preload_whose_link_breaks_mid_transfer_writes_nothing(loaded_redis, cut_link, own_redis):
    rows = lastseen_by_machine()
    store = Store(open_redis(cut_link.url(), timeout=10))
    with pytest.raises(redis.ConnectionError):
        store.preload(rows)
    assert cut_link.forwarded >= CUT_AFTER, "the link broke before the load began"
    assert unchanged(loaded_redis)

    # the advice given: run it again
    assert Store(own_redis.client()).preload(rows) == (MACHINES - 1, 1)
    assert loaded_redis.hlen("machines") == MACHINES
    assert loaded_redis.hget("machines", KNOWN[0]) == KNOWN[1]


def test_the_preload_command_says_what_a_broken_link_left(loaded_redis, cut_link):
    result = preload_command(cut_link.url(), as_machines_json(lastseen_by_machine()))
    assert result.returncode == 1
    assert "failed during the load" in result.stderr.decode()
    assert "applied whole or not at all; run it again" in result.stderr.decode()
    assert unchanged(loaded_redis)


def test_a_preload_refused_for_lack_of_memory_writes_nothing(loaded_redis, own_redis):
    # room for a part of the load, not for all of it
    loaded_redis.config_set("maxmemory", int(loaded_redis.info("memory")["used_memory"]) + CUT_AFTER)
    result = preload_command(own_redis.url, as_machines_json(lastseen_by_machine()))
    assert result.returncode == 1
    assert "refused the load, nothing written: " in result.stderr.decode()
    assert "maxmemory" in result.stderr.decode()
    assert unchanged(loaded_redis)


def test_an_inventory_load_whose_link_keeps_breaking_writes_nothing_and_gives_up(loaded_redis, cut_link,
                                                                                 own_redis):
    loaded_redis.hset("inventory", "mdc1:t-host-7", "w")
    result = subprocess.run(
        [sys.executable, "-m", "releng_hardware.cli", "inventory", "load", "--force"], cwd=ROOT,
        input="".join(f"mdc1:t-host-{i} gecko-t-linux-talos\n" for i in range(MACHINES)).encode(),
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": cut_link.url()}, capture_output=True, timeout=120)
    assert result.returncode == 1
    assert "failed during the load" in result.stderr.decode()
    assert result.stderr.decode().count("\n") == 1
    assert cut_link.forwarded >= CUT_AFTER, "the link broke before the load began"
    assert unchanged(loaded_redis) and loaded_redis.hgetall("inventory") == {"mdc1:t-host-7": "w"}
