"""The machine index on the real Redis: the exactness tests of tests/index_exactness.py, and web
processes and listeners racing."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from releng_hardware.store.machines import Store, open_redis
from releng_hardware.views.reads import read_summary
from tests.conftest import REDIS_URL, make_config
from tests.index_exactness import *  # noqa: F403 - the shared tests, collected here
from tests.index_exactness import NOW, PROVISIONER, assert_exact, deliver, random_traffic


@pytest.fixture
def store(real_store: Store) -> Store:
    return real_store


@pytest.fixture
def config(redis_prefix: str) -> Any:
    return make_config(redis_key_prefix=redis_prefix, provisioner_ids=(PROVISIONER,))


def test_listeners_and_web_processes_writing_and_reading_at_once_leave_it_exact(real_store, config,
                                                                                  redis_prefix):
    rng = random.Random(21)
    events = random_traffic(rng, hosts=80, runs=1500)
    halves = (events[0::2], events[1::2])
    clients = [open_redis(REDIS_URL) for _ in range(4)]
    errors: list[BaseException] = []

    def listener(client: Any, part: list[Any], seed: int) -> None:
        try:
            deliver(Store(client, redis_prefix), random.Random(seed), part)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    def web(client: Any) -> None:
        try:
            for _ in range(30):
                read_summary(Store(client, redis_prefix), config, NOW)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=listener, args=(clients[0], halves[0], 1)),
               threading.Thread(target=listener, args=(clients[1], halves[1], 2)),
               threading.Thread(target=web, args=(clients[2],)),
               threading.Thread(target=web, args=(clients[3],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    assert not errors
    counted = assert_exact(real_store, config)
    assert counted["totals"]["total"] == 80
