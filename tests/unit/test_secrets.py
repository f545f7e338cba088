"""Secrets never reach a log line, an error or a response: one test per path they could take."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

import pytest

from releng_hardware.core.config import Config, ConfigError, mask_url
from releng_hardware.web.app import create_app
from tests.conftest import NOW, ROOT, make_config

SECRET = "Zq9hunter2"


@pytest.mark.parametrize("url, masked", [
    (f"redis://:{SECRET}@redis.test:6379/0", "redis://:***@redis.test:6379/0"),
    (f"rediss://h:{SECRET}@redis.test:6380/0?ssl_cert_reqs=none",
     "rediss://h:***@redis.test:6380/0?ssl_cert_reqs=none"),
    # redis-py also reads the password from the query
    (f"redis://redis.test:6379/0?password={SECRET}&db=1", "redis://redis.test:6379/0?password=***&db=1"),
    (f"unix:///run/redis.sock?password={SECRET}", "unix:///run/redis.sock?password=***"),
    (f"amqps://releng:{SECRET}%2F%40@[::1]:5671/", "amqps://releng:***@[::1]:5671/"),
    (f"amqp://u:{SECRET}@broker:notaport/", "amqp://u:***@broker:notaport/"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
])
def test_masked_urls_keep_everything_but_the_secrets(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize("environ", [
    {"REDIS_URL": f"http://:{SECRET}@redis.test/0"},
    {"REDIS_URL": f"redis://:{SECRET}@redis.test:notaport/0"},
    {"REDIS_URL": f"redis://:{SECRET}@redis.test:99999/0"},
    {"PULSE_URL": f"http://u:{SECRET}@broker/"},
    {"PULSE_URL": f"amqps://u:{SECRET}@broker:port/"},
])
def test_configuration_errors_never_show_the_secret(environ):
    with pytest.raises(ConfigError) as error:
        Config.from_environ(environ)
    assert SECRET not in str(error.value)
    assert str(error.value).startswith(next(iter(environ)))


@pytest.mark.parametrize("command", [["preload_redis.py"], ["-m", "releng_hardware.cli", "inventory", "load"]])
@pytest.mark.parametrize("redis_url", [
    f"redis://:{SECRET}@127.0.0.1:1/0",
    f"redis://127.0.0.1:1/0?password={SECRET}",
])
def test_loads_name_an_unreachable_redis_without_its_password(command, redis_url):
    data = b'[{"machine": "a", "datacenter": "mdc1", "lastseen": "2026-11-20T08:00:00"}]'
    result = subprocess.run([sys.executable, *command], cwd=ROOT, input=data,
                            env={"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url, "REDIS_TIMEOUT": "1s"},
                            capture_output=True, timeout=30)
    assert result.returncode == 1
    output = (result.stdout + result.stderr).decode()
    assert "127.0.0.1:1" in output and "***" in output
    assert SECRET not in output


@pytest.mark.parametrize("env", [
    {"PULSE_URL": f"amqp://releng:{SECRET}@127.0.0.1:1/"},
    {"AMQP_USER": "releng", "AMQP_PASS": f"{SECRET}/@:", "PULSE_HOST": "127.0.0.1"},
])
def test_the_listener_logs_its_broker_without_the_password(env):
    listener = subprocess.Popen(
        [sys.executable, "listen_to_pulse.py"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://127.0.0.1:1/0", "PYTHONUNBUFFERED": "1", **env})
    lines = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("cannot reach broker" in line for line in lines):
            lines.append(listener.stdout.readline().decode())
    finally:
        listener.send_signal(signal.SIGTERM)
        lines.append(listener.communicate(timeout=20)[0].decode())
    output = "".join(lines)
    assert "cannot reach broker amqp" in output and "releng:***@127.0.0.1" in output
    assert SECRET not in output


def test_the_web_on_an_unreachable_redis_never_shows_its_password(caplog):
    app = create_app(make_config(redis_url=f"redis://:{SECRET}@127.0.0.1:1/0", redis_timeout=1.0),
                     clock=lambda: NOW)
    client = app.test_client()
    caplog.set_level(logging.DEBUG)
    bodies = [client.get(path).get_data(as_text=True)
              for path in ("/machines", "/summary", "/metrics", "/", "/__heartbeat__")]
    assert all("503" in body or "error" in body for body in bodies)
    assert SECRET not in "".join(bodies) + caplog.text
