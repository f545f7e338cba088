"""The web dyno as the Procfile starts it (gunicorn), under load and with its Redis gone."""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from releng_hardware.events import PendingEvent, WorkerEvent
from releng_hardware.simulate import backlog
from releng_hardware.store import Store
from releng_hardware.times import utcnow
from tests.conftest import wait_for
from tests.integration.faults_support import ROOT, RedisServer, events_of, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD_SECONDS = 20
CLIENTS = 200
DATA_ENDPOINTS = ("/machines", "/summary", "/machines/{id}")


def procfile_command(process_type: str) -> str:
    """The command of one process type in the Procfile, as Heroku would run it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return command.strip()
    raise AssertionError(f"the Procfile has no {process_type}: line")


class Gunicorn:
    """The Procfile's `web:` command on a free port, reading the given Redis and prefix."""

    def __init__(self, redis_url: str, prefix: str, log_path: Path) -> None:
        self.port = free_port()
        command = procfile_command("web").replace("$PORT", str(self.port))
        env = {
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PORT": str(self.port),
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
        }
        self.log_path = log_path
        self._log = open(log_path, "wb")
        # its own session, so the master and its workers can be ended by their group id
        self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self) -> None:
        """Wait until /__lbheartbeat__ answers 200."""
        def ready() -> bool:
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
            try:
                return get(self.port, "/__lbheartbeat__", timeout=2)[0] == 200
            except OSError:
                return False
        wait_for(ready, 30, "gunicorn did not start")

    def stop(self) -> None:
        """SIGTERM the master (gunicorn's graceful stop), then kill the group if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def get(port: int, path: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes, float]:
    """(status, headers, body, seconds) of one GET on a fresh loopback connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return (response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                time.monotonic() - started)
    finally:
        connection.close()


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[Any]:
    """Start gunicorn as the Procfile says; every one started is stopped afterwards."""
    started: list[Gunicorn] = []

    def start(redis_url: str, prefix: str) -> Gunicorn:
        server = Gunicorn(redis_url, prefix, tmp_path / f"gunicorn-{len(started) + 1}.log")
        started.append(server)
        server.wait_ready()
        return server
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server only this test uses; always killed at the end."""
    server = RedisServer().start()
    yield server
    server.close()


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
