"""Shared helpers and the unit tests' fixtures (fakeredis); markers from each test's folder.

The integration tests' fixtures (the machine's real Redis and RabbitMQ) are in
tests/integration/conftest.py.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import fakeredis
import pytest

from releng_hardware.core.config import Config
from releng_hardware.store.machines import Store

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NOW = datetime(2026, 11, 20, 15, 0, 0)
DEADLINE = NOW + timedelta(days=1)


def queue_message(name: str) -> dict[str, Any]:
    """A queue message from tests/fixtures: {"exchange", "routing_key", "body"}, a fresh copy each call."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require(available: bool, missing: str, under_ci: str, locally: str) -> None:
    """Skip when something a test needs is missing, except under CI, where that fails the run."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{missing} ({under_ci})")
    pytest.skip(f"{missing}; {locally}")


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is down, except under CI, where that fails the run."""
    require(_reachable(host, port), f"{name} is not reachable at {host}:{port}",
            "CI must run against the real service", "start it to run integration tests")


def unique(prefix: str) -> str:
    """A short unique name (fits Taskcluster's 38-character identifiers)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_for(condition: Callable[[], Any], timeout: float, message: str) -> Any:
    """Poll until condition() is truthy; fail with message after timeout seconds."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(message)


def stored_keys(store: Store) -> list[str]:
    """Every key under the store's prefix."""
    return list(store.redis.scan_iter(match=store.prefix + "*", count=1000))


def make_config(**overrides: Any) -> Config:
    """Settings for a test: defaults plus what the test says."""
    return Config(**overrides)


def seen(store: Store, host: str, dc: str = "mdc1", *, ago: timedelta, state: str = "completed",
         worker_type: str = "gecko-t-linux-talos", task: str = "AAAAAAAAQAGAAAAAAAAAAA",
         reason: str | None = None) -> None:
    """Record one run of a machine `ago` before NOW."""
    from releng_hardware.core.events import WorkerEvent
    store.record([WorkerEvent(dc, host, "releng-hardware", worker_type, task, 0, state,
                              reason or (None if state == "running" else state), NOW - ago,
                              DEADLINE, True)], now=NOW)


def record_every_shape(store: Store) -> None:
    """A fleet with every shape a machine takes: running, resolved, stale with work waiting,
    one hostname in two datacenters, preloaded, legacy (lastseen alone, no fraction), and
    never seen though in the inventory."""
    from releng_hardware.core.events import PendingEvent
    seen(store, "t-linux64-ms-100", ago=timedelta(minutes=5), state="running")
    seen(store, "t-w1064-ms-281", dc="mdc2", ago=timedelta(hours=7), state="exception",
         task="CCCCCCCCQAGAAAAAAAAAAA", worker_type="gecko-t-win10-64-hw")
    seen(store, "t-linux64-ms-100", dc="mdc2", ago=timedelta(days=3), task="DDDDDDDDQAGAAAAAAAAAAA")
    store.record([PendingEvent("releng-hardware", "gecko-t-win10-64-hw", "EEEEEEEEQAGAAAAAAAAAAA", 0,
                               NOW, DEADLINE)], now=NOW)
    store.preload({"mdc3:t-mac-ms-001": NOW - timedelta(hours=1)})
    store.redis.hset(store.keys.machines, "mdc3:t-legacy-1", "2018-11-08T08:47:50")
    store.listener_heartbeat(NOW)
    # an inventory: one machine seen, two never seen (one without a worker type)
    store.update_inventory(lambda current: {"mdc1:t-linux64-ms-100": "gecko-t-linux-talos",
                                            "mdc1:t-linux64-ms-199": "gecko-t-linux-talos",
                                            "mdc3:t-spare-1": None})


# -- unit: fakeredis ---------------------------------------------------------

@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    """One in-memory Redis server per test; set .connected = False for an outage."""
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(fake_server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    """A client of the test's fake server, decoding like the real one."""
    return fakeredis.FakeRedis(server=fake_server, decode_responses=True)


@pytest.fixture
def store(fake_redis: fakeredis.FakeRedis) -> Store:
    """A store on the fake server."""
    return Store(fake_redis)


@pytest.fixture
def config() -> Config:
    """Default settings."""
    return make_config()


@pytest.fixture
def app_factory(fake_redis: fakeredis.FakeRedis) -> Callable[..., Any]:
    """Build the app on the fake server with a fixed clock (NOW unless given)."""
    from releng_hardware.web.app import create_app

    def build(config: Config | None = None, now: datetime = NOW) -> Any:
        app = create_app(config or make_config(), redis=fake_redis, clock=lambda: now)
        app.testing = True
        return app
    return build


@pytest.fixture
def client(app_factory: Callable[..., Any]) -> Any:
    """A Flask test client of the app on the fake server."""
    return app_factory().test_client()


# -- markers ---------------------------------------------------------------------

# A test's folder says what it needs, so its marker comes from there and no file can forget it.
FOLDER_MARKERS = {"integration": "integration", "browser": "browser"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration `integration` and under tests/browser `browser`."""
    tests = Path(__file__).resolve().parent
    for item in items:
        folder = item.path.resolve().relative_to(tests).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])


def fail_first_record(store: Store, error: Exception) -> None:
    """Make the store's next batch write raise `error`, and every later one succeed."""
    record = store.record
    failures = iter([error])

    def flaky_record(*args: Any, **kwargs: Any) -> Any:
        failure = next(failures, None)
        if failure:
            raise failure
        return record(*args, **kwargs)

    store.record = flaky_record  # type: ignore[method-assign]
