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
from tests.index_exactness import (  # noqa: F401 - the shared tests, collected here
    NOW, PROVISIONER, assert_exact, deliver, random_traffic,
    test_a_judgement_of_a_machine_written_since_is_not_stored,
    test_a_slow_judgement_of_an_older_record_fails_after_a_judged_machine_is_written_again,
    test_changed_thresholds_judge_every_machine_again,
    test_machines_written_before_the_index_are_indexed_on_first_read,
    test_retention_inventory_quarantines_preload_and_backfill_keep_it_exact,
    test_the_dashboard_pages_from_the_index_are_those_of_every_machine,
    test_the_index_counts_what_judging_every_machine_counts, test_the_scripts_order_times_as_python_does)


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
