"""The web on a real redis-server that refuses it: a 503, never a 500; reads survive a full memory."""

from __future__ import annotations

from datetime import timedelta

import pytest

from releng_hardware.store.machines import Store
from releng_hardware.web.app import create_app
from tests.conftest import NOW, make_config, seen
from tests.integration.support import free_port


@pytest.fixture
def admin(own_redis):
    """A client of the test's own Redis, connected before it turns hostile."""
    client = own_redis.client()
    seen(Store(client), "t-linux64-ms-100", ago=timedelta(minutes=5))
    client.hset("listener", "heartbeat_at", (NOW - timedelta(seconds=10)).isoformat(timespec="microseconds"))
    yield client
    client.close()


def web(own_redis):
    app = create_app(make_config(redis_url=own_redis.url, redis_timeout=2.0), clock=lambda: NOW)
    return app.test_client()


def assert_refused(client):
    for path in ("/machines", "/machines/mdc1:t-linux64-ms-100", "/summary", "/metrics"):
        response = client.get(path)
        assert response.status_code == 503, (path, response.get_data(as_text=True)[:300])
        assert response.get_json()["error"] == "redis_unavailable"
    assert client.get("/").status_code == 503
    heartbeat = client.get("/__heartbeat__")
    assert heartbeat.status_code == 500
    assert heartbeat.get_json()["checks"] == {"redis": "error"}


def test_a_password_set_behind_its_back_is_a_503(own_redis, admin):
    admin.config_set("requirepass", "s3cret")  # new connections now get NOAUTH
    assert_refused(web(own_redis))


def test_a_replica_cut_off_from_its_primary_is_a_503(own_redis, admin):
    admin.config_set("replica-serve-stale-data", "no")  # reads now get MASTERDOWN
    admin.replicaof("127.0.0.1", free_port())
    assert_refused(web(own_redis))


def test_reads_go_on_when_redis_memory_is_full(own_redis, admin):
    admin.config_set("maxmemory", "1")  # every write now gets OOM; the web only reads
    client = web(own_redis)
    assert [m["id"] for m in client.get("/machines").get_json()] == ["mdc1:t-linux64-ms-100"]
    assert client.get("/__heartbeat__").get_json()["checks"]["redis"] == "ok"
