"""The web dyno as the Procfile starts it (gunicorn), under load and with its Redis gone."""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.tools.simulate import backlog
from releng_hardware.store.machines import Store
from releng_hardware.core.times import utcnow
from tests.integration.support import RedisServer, events_of, get

pytestmark = pytest.mark.slow

LOAD_SECONDS = 20
CLIENTS = 200
DATA_ENDPOINTS = ("/machines", "/summary", "/machines/{id}")


def preload_fleet(store: Store, machines: int, messages: int) -> list[str]:
    """Record a simulated day for `machines` machines; the ids the store now holds."""
    events: list[WorkerEvent | PendingEvent] = events_of(
        backlog(messages, machines=machines, end=utcnow(), provisioner_id="releng-hardware"),
        "releng-hardware")
    for start in range(0, len(events), 1000):
        store.record(events[start:start + 1000], now=utcnow())
    return [record.machine_id for record in store.machines()]


class LoadClient(threading.Thread):
    """One keep-alive client sending GETs back to back until the deadline."""

    def __init__(self, port: int, ids: list[str], deadline: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.port, self.ids, self.deadline = port, ids, deadline
        self.rng = random.Random(seed)
        self.statuses: Counter[int] = Counter()
        self.failures: Counter[str] = Counter()
        self.connections = 0

    def _connect(self) -> http.client.HTTPConnection:
        self.connections += 1
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def run(self) -> None:
        """Send requests until the deadline, counting statuses and failures."""
        connection = self._connect()
        while time.monotonic() < self.deadline:
            roll = self.rng.random()
            path = "/machines" if roll < 0.15 else (
                "/summary" if roll < 0.2 else f"/machines/{self.rng.choice(self.ids)}")
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                self.statuses[response.status] += 1
                if response.will_close:
                    connection.close()
                    connection = self._connect()
            except (OSError, http.client.HTTPException) as exc:
                # a refused, reset or closed connection, or a timeout: exactly what must not happen
                self.failures[type(exc).__name__] += 1
                connection.close()
                connection = self._connect()
        connection.close()


def test_gunicorn_under_200_concurrent_clients_for_20s_answers_every_request_without_5xx(
        real_store: Store, redis_prefix: str, start_gunicorn: Any) -> None:
    """Hundreds of concurrent keep-alive clients on /machines and /machines/<id>: no 5xx, no drops."""
    ids = preload_fleet(real_store, machines=1000, messages=8000)
    assert len(ids) >= 950
    server = start_gunicorn("redis://127.0.0.1:6379/0", redis_prefix)
    status, _, body, _ = get(server.port, f"/machines/{ids[0]}")
    assert status == 200 and orjson.loads(body)["id"] == ids[0]
    assert len(orjson.loads(get(server.port, "/machines")[2])) == len(ids)

    deadline = time.monotonic() + LOAD_SECONDS
    clients = [LoadClient(server.port, ids, deadline, seed) for seed in range(CLIENTS)]
    started = time.monotonic()
    for client in clients:
        client.start()
    for client in clients:
        client.join(LOAD_SECONDS + 60)
    took = time.monotonic() - started

    statuses = sum((client.statuses for client in clients), Counter())
    failures = sum((client.failures for client in clients), Counter())
    total = sum(statuses.values())
    print(f"\n{total} requests in {took:.1f}s by {CLIENTS} clients (~{total / took:.0f} rps), "
          f"statuses {dict(statuses)}, failures {dict(failures)}, "
          f"connections {sum(client.connections for client in clients)}")
    assert not any(client.is_alive() for client in clients)
    assert total > 0
    assert failures == Counter()
    assert statuses == Counter({200: total})


def test_with_redis_stalled_then_killed_data_endpoints_answer_503_json_and_lbheartbeat_200(
        own_redis: RedisServer, redis_prefix: str, start_gunicorn: Any) -> None:
    """Redis stops answering, then dies: 503 JSON within a few seconds; the LB heartbeat stays 200."""
    ids = preload_fleet(Store(own_redis.client(), redis_prefix), machines=50, messages=600)
    server = start_gunicorn(own_redis.url, redis_prefix)
    paths = [path.format(id=ids[0]) for path in DATA_ENDPOINTS]
    assert [get(server.port, path)[0] for path in paths] == [200] * len(paths)

    for outage in (own_redis.pause, own_redis.kill):
        outage()
        for path in paths:
            status, headers, body, seconds = get(server.port, path)
            assert (path, status) == (path, 503)
            assert headers["content-type"].startswith("application/json")
            assert orjson.loads(body)["error"] == "redis_unavailable"
            # the guarantee itself: a caller learns of the outage in seconds, not after a hang
            assert seconds < 10, (path, seconds)
        status, _, body, seconds = get(server.port, "/__lbheartbeat__")
        assert status == 200 and seconds < 2
        status, _, body, _ = get(server.port, "/__heartbeat__")
        assert status == 500 and orjson.loads(body)["checks"]["redis"] == "error"
