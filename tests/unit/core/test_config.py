"""Configuration: parsed once from a mapping, every bad value named, passwords never shown."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from releng_hardware.core.config import Config, ConfigError, mask_url, parse_duration, settings_table
from tests.conftest import ROOT


def test_defaults_match_the_documented_ones():
    config = Config.from_environ({})
    assert config.redis_url == "redis://localhost:6379/0"
    assert config.pulse_host == "pulse.mozilla.org"
    assert config.pulse_queue_name == "releng-hardware"
    assert config.provisioner_ids == ("releng-hardware",)
    assert config.port == 8080
    assert config.stale_after == 6 * 3600
    assert (config.claim_timeout, config.recent_tasks, config.failure_streak, config.success_rate_min,
            config.exceptions_max, config.hung_after) == (1200, 20, 3, 0.85, 3, 3 * 3600)
    assert config.taskcluster_root_url == "https://firefox-ci-tc.services.mozilla.com"


def test_pulse_credentials_connect_over_tls_to_port_5671():
    config = Config.from_environ({"AMQP_USER": "releng", "AMQP_PASS": "s3cr/t", "PULSE_HOST": "pulse.test"})
    assert config.amqp_url == "amqps://releng:s3cr%2Ft@pulse.test:5671/"
    assert config.queue_name == "queue/releng/releng-hardware"


def test_pulse_url_wins_over_user_and_password():
    config = Config.from_environ({"PULSE_URL": "amqp://guest:guest@localhost:5672/",
                                  "AMQP_USER": "releng", "AMQP_PASS": "x", "PULSE_QUEUE_NAME": "dev"})
    assert config.amqp_url == "amqp://guest:guest@localhost:5672/"
    assert config.queue_name == "queue/guest/dev"


def test_redis_certificates_are_verified_unless_told_otherwise():
    assert Config.from_environ({}).redis_tls_verify == "required"
    assert Config.from_environ({"REDIS_TLS_VERIFY": "None"}).redis_tls_verify == "none"


def test_listener_without_any_broker_setting_is_an_error():
    with pytest.raises(ConfigError, match="PULSE_URL"):
        Config.from_environ({}).amqp_url  # noqa: B018 -- reading it raises


def test_lists_and_durations_are_parsed():
    config = Config.from_environ({"PROVISIONER_IDS": "releng-hardware, other-hw ,", "STALE_AFTER": "90m",
                                  "PORT": "5000", "BATCH_SIZE": "10", "PULSE_PREFETCH": "20"})
    assert config.provisioner_ids == ("releng-hardware", "other-hw")
    assert (config.stale_after, config.port, config.batch_size, config.prefetch) == (5400, 5000, 10, 20)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("6h", 21600), ("2d", 172800),
                                           ("1.5h", 5400), (" 999999999d ", 999999999 * 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("environ, variable", [
    ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
    ({"PULSE_URL": "localhost:5672"}, "PULSE_URL"),
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"STALE_AFTER": "soon"}, "STALE_AFTER"),
    ({"STALE_AFTER": "0"}, "STALE_AFTER"),
    ({"STALE_AFTER": "1234567890s"}, "STALE_AFTER"),  # ten digits: past what a duration may say
    ({"PROVISIONER_IDS": "a b"}, "PROVISIONER_IDS"),
    ({"PROVISIONER_IDS": ","}, "PROVISIONER_IDS"),
    ({"BATCH_SIZE": "-1"}, "BATCH_SIZE"),
    ({"BATCH_SIZE": "2000", "PULSE_PREFETCH": "100"}, "PULSE_PREFETCH"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"LISTENER_WATCHDOG": "10s"}, "LISTENER_WATCHDOG"),
    ({"TASKCLUSTER_ROOT_URL": "ftp://x"}, "TASKCLUSTER_ROOT_URL"),
    ({"REDIS_TLS_VERIFY": "optional"}, "REDIS_TLS_VERIFY"),
    ({"SUCCESS_RATE_MIN": "1.5"}, "SUCCESS_RATE_MIN"),
    ({"SUCCESS_RATE_MIN": "most"}, "SUCCESS_RATE_MIN"),
    ({"FAILURE_STREAK": "0"}, "FAILURE_STREAK"),
    ({"RECENT_TASKS": "-3"}, "RECENT_TASKS"),
    ({"HUNG_AFTER": "forever"}, "HUNG_AFTER"),
    ({"CLAIM_TIMEOUT": "0"}, "CLAIM_TIMEOUT"),
])
def test_invalid_values_name_their_variable(environ, variable):
    with pytest.raises(ConfigError, match=variable):
        Config.from_environ(environ)


def test_passwords_are_masked_in_urls():
    assert mask_url("amqps://releng:hunter2@pulse.mozilla.org:5671/") == "amqps://releng:***@pulse.mozilla.org:5671/"
    assert mask_url("redis://:hunter2@redis.test:6379/0") == "redis://:***@redis.test:6379/0"
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_the_operations_guide_documents_every_setting():
    guide = (ROOT / "docs" / "operations.md").read_text()
    for variable, default, _ in settings_table():
        row = re.search(rf"^\| `{variable}` \|(.*)\|(.*)\|$", guide, re.MULTILINE)
        assert row, f"docs/operations.md's configuration table lacks {variable}"
        assert (f"`{default}`" if default else "unset") in row.group(2), variable


def run_script(script: str, env: dict, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env},
                          input=stdin, capture_output=True, timeout=30)


@pytest.mark.parametrize("script", ["listen_to_pulse.py", "preload_redis.py"])
def test_bad_configuration_exits_with_one_line_not_a_traceback(script):
    result = run_script(script, {"REDIS_URL": "nonsense://x", "AMQP_PASS": "hunter2"})
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert lines == ["releng-hardware: configuration error: REDIS_URL: must start with redis://, rediss:// or unix://"]


def test_listener_without_credentials_says_what_to_set():
    result = run_script("listen_to_pulse.py", {"AMQP_PASS": "hunter2"})
    assert result.returncode == 2
    assert "set PULSE_URL, or both AMQP_USER and AMQP_PASS" in result.stderr.decode()
    assert "hunter2" not in result.stderr.decode() + result.stdout.decode()
