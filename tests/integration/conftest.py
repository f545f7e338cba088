"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import require
from tests.integration.support import RABBITMQ_BIN, Gunicorn, RabbitNode, RedisServer


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


@pytest.fixture
def own_rabbit() -> Iterator[RabbitNode]:
    """A RabbitMQ node only this test uses; always stopped and removed at the end."""
    require(RabbitNode.available(), f"RabbitMQ's server scripts are not in {RABBITMQ_BIN}",
            "scripts/services installs them", "install rabbitmq-server to run this test")
    node = RabbitNode()
    try:
        yield node.start()
    finally:
        node.close()
