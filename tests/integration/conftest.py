"""Fixtures shared by the integration tests: the machine's real Redis and RabbitMQ, each test
under its own key prefix, queue and provisioner; processes and services of a test's own."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from releng_hardware.core.config import Config
from releng_hardware.store.machines import Store, open_redis
from tests.conftest import AMQP_URL, REDIS_URL, make_config, require, require_service, unique, wait_for
from tests.integration.support import RABBITMQ_BIN, Gunicorn, RabbitNode, RedisServer


# -- the machine's real services ------------------------------------------------

@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses."""
    return unique("test") + ":"


@pytest.fixture
def real_redis(redis_prefix: str) -> Iterator[Any]:
    """A client of the real Redis; every key under the test's prefix is deleted afterwards."""
    require_service("Redis", "127.0.0.1", 6379)
    client = open_redis(REDIS_URL)
    yield client
    keys = list(client.scan_iter(match=redis_prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def real_store(real_redis: Any, redis_prefix: str) -> Store:
    """A store on the real Redis under the test's prefix."""
    return Store(real_redis, redis_prefix)


@pytest.fixture
def provisioner_id() -> str:
    """A provisioner only this test publishes for, so no other test's messages reach it."""
    return unique("prov")


@pytest.fixture
def amqp_config(redis_prefix: str, provisioner_id: str) -> Iterator[Config]:
    """Settings for the real broker: own queue, own provisioner; the queue is deleted afterwards."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    require_service("Redis", "127.0.0.1", 6379)
    declare_queue_service_exchanges()
    config = make_config(
        pulse_url=AMQP_URL, redis_url=REDIS_URL, redis_key_prefix=redis_prefix,
        pulse_queue_name=unique("test"), provisioner_ids=(provisioner_id,),
        batch_max_age=0.05, redis_timeout=2.0,
    )
    yield config
    delete_queue(config.queue_name)


def declare_queue_service_exchanges() -> None:
    """Declare the topic exchanges as the Taskcluster queue has them on Pulse (a fresh broker lacks them)."""
    from kombu import Connection

    from releng_hardware.tools.simulate import declare_exchanges
    with Connection(AMQP_URL) as connection:
        declare_exchanges(connection.default_channel)


def delete_queue(name: str) -> None:
    """Remove a test queue from the broker."""
    from kombu import Connection
    with Connection(AMQP_URL) as connection:
        try:
            connection.default_channel.queue_delete(name)
        except Exception:
            pass


class ListenerThread:
    """The real listener consuming in a background thread of the test process."""

    def __init__(self, config: Config, store: Store) -> None:
        from kombu import Connection

        from releng_hardware.ingest.listener import Listener
        self.connection = Connection(config.amqp_url, heartbeat=config.amqp_heartbeat)
        self.listener = Listener(self.connection, store, config)
        self.thread = threading.Thread(target=self.listener.run_until_stopped, daemon=True)

    def start(self) -> "ListenerThread":
        self.thread.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> None:
        wait_for(lambda: self.listener.connects > 0, timeout, "listener never connected")

    def stop(self) -> None:
        self.listener.should_stop = True
        self.thread.join(timeout=10)
        self.connection.release()


@pytest.fixture
def listener_thread(amqp_config: Config, real_store: Store) -> Iterator[Callable[..., ListenerThread]]:
    """Start real listeners on the test's queue; all are stopped afterwards."""
    started: list[ListenerThread] = []

    def start(config: Config | None = None) -> ListenerThread:
        thread = ListenerThread(config or amqp_config, real_store).start()
        started.append(thread)
        thread.wait_connected()
        return thread
    yield start
    for thread in started:
        thread.stop()


@pytest.fixture
def publish(amqp_config: Config) -> Callable[..., int]:
    """Publish simulator messages (or hand-made ones) on the real exchanges."""
    from kombu import Connection

    from releng_hardware.tools.simulate import publish as publish_messages

    def send(messages: Any) -> int:
        with Connection(AMQP_URL) as connection:
            return publish_messages(connection, messages)
    return send


# -- processes and services of the test's own ------------------------------------


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
