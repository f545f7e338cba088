"""Redis over TLS with a self-signed certificate, as Heroku Redis serves it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Iterator

import pytest
import redis

from releng_hardware.store.machines import open_redis
from tests.conftest import ROOT
from tests.integration.support import RedisServer

ENTRY = {"machine": "t-linux64-ms-100", "datacenter": "mdc1", "lastseen": "2026-01-02T03:04:05.000000"}


@pytest.fixture
def tls_redis() -> Iterator[RedisServer]:
    """A redis-server speaking only TLS, with a certificate made for this test."""
    server = RedisServer(tls=True).start()
    yield server
    server.close()


def preload(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "preload_redis.py"], cwd=ROOT, input=json.dumps([ENTRY]).encode(),
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, timeout=60)


def test_a_self_signed_certificate_is_refused_by_default(tls_redis):
    client = open_redis(tls_redis.url, timeout=2)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_a_self_signed_certificate_is_accepted_when_verification_is_none(tls_redis):
    client = open_redis(tls_redis.url, timeout=2, tls_verify="none")
    client.set("greeting", "hello")
    assert client.get("greeting") == "hello"


def test_the_setting_reaches_the_processes(tls_redis):
    refused = preload({"REDIS_URL": tls_redis.url})
    assert refused.returncode == 1
    assert "certificate verify failed" in refused.stderr.decode()
    assert tls_redis.client().hlen("machines") == 0

    accepted = preload({"REDIS_URL": tls_redis.url, "REDIS_TLS_VERIFY": "none"})
    assert accepted.returncode == 0, accepted.stderr.decode()
    assert tls_redis.client().hgetall("machines") == {"mdc1:t-linux64-ms-100": ENTRY["lastseen"]}
