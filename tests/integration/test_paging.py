"""A paged /machines on the real Redis: with a fleet bigger than Redis keeps compact (so the
order and the HSCAN of its build really go step by step), retention sweeping meanwhile, the
walk gives the unpaged answer."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from releng_hardware.views import reads
from releng_hardware.web.app import create_app
from tests.conftest import NOW, make_config
from tests.unit.views.test_paging import random_fleet, unpaged, walk


def test_walking_every_page_on_the_real_redis_gives_the_unpaged_answer(real_store, real_redis,
                                                                       monkeypatch):
    rng = random.Random(21)
    random_fleet(real_store, rng, machines=400)
    app = create_app(make_config(), redis=real_redis, clock=lambda: NOW)
    client: Any = app.test_client()
    monkeypatch.setattr(reads, "SCAN_BUDGET", 150)
    monkeypatch.setattr(reads, "FILTERED_CHUNK", 40)
    for query in ({}, {"sort": "-machine"}, {"state": "failed"}, {"sort": "lastseen"},
                  {"format": "csv", "datacenter": "md"}):
        expected = unpaged(client, query)
        assert walk(client, query, 37)[0] == expected

    # an upgraded deployment: the order built again in steps of the real HSCAN
    real_store.redis.delete(real_store.keys.machine_order, real_store.keys.machine_order_state)
    real_store.build_machine_order(step=50)
    assert walk(client, {}, 100)[0] == unpaged(client, {})

    # retention mid-walk: a machine swept is not shown after, none is shown twice
    first = client.get("/machines?limit=50")
    real_store.remove_expired(NOW - timedelta(days=1), count=10_000)
    rest: list[Any] = []
    cursor = first.headers.get("X-Next-Cursor")
    while cursor:
        response = client.get(f"/machines?limit=50&cursor={cursor}")
        rest += response.get_json()
        cursor = response.headers.get("X-Next-Cursor")
    ids = [machine["id"] for machine in first.get_json() + rest]
    assert len(ids) == len(set(ids))
    assert {machine["id"] for machine in rest} <= set(real_store.lastseen_by_machine())
