"""Which Redis failures pass by themselves and which need an operator: one rule, two users.

The listener's write pipeline and the web app both log a passing outage as a warning and
anything else as an error; both take the split from store.is_passing_outage.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from redis.exceptions import MasterDownError, NoPermissionError, OutOfMemoryError

from releng_hardware.core.events import parse_message
from releng_hardware.ingest.pipeline import WritePipeline
from releng_hardware.store.machines import REDIS_ERRORS, Store, is_passing_outage
from releng_hardware.web.app import create_app
from tests.conftest import NOW, fail_first_record, make_config, queue_message

PASSING = [
    redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    redis.TimeoutError("Timeout reading from socket"),
    redis.BusyLoadingError("Redis is loading the dataset in memory"),
]
NEEDS_AN_OPERATOR = [
    # redis-py makes these two ConnectionErrors: the rule must not read them as a lost link
    redis.AuthenticationError("NOAUTH Authentication required."),
    redis.AuthenticationError("WRONGPASS invalid username-password pair or user is disabled."),
    redis.ReadOnlyError("You can't write against a read only replica."),
    OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    NoPermissionError("User default has no permissions to run the 'hgetall' command"),
    MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    redis.ResponseError("ERR unknown command"),
]
CASES = [(error, logging.WARNING) for error in PASSING] + [
    (error, logging.ERROR) for error in NEEDS_AN_OPERATOR]


def case_id(value: object) -> str:
    """`AuthenticationError-WRONGPASS`, `ERROR`: readable test ids."""
    if isinstance(value, Exception):
        return f"{type(value).__name__}-{str(value).split()[0]}"
    return logging.getLevelName(value)


@pytest.mark.parametrize("error", PASSING, ids=case_id)
def test_a_lost_link_a_timeout_or_a_loading_server_is_a_passing_outage(error):
    assert isinstance(error, REDIS_ERRORS) and is_passing_outage(error)


@pytest.mark.parametrize("error", NEEDS_AN_OPERATOR, ids=case_id)
def test_a_wrong_password_or_a_refusal_needs_an_operator(error):
    assert isinstance(error, REDIS_ERRORS) and not is_passing_outage(error)


@pytest.mark.parametrize("error, level", CASES, ids=case_id)
def test_the_write_pipeline_logs_a_failed_write_at_the_rule_s_level(store: Store, error, level,
                                                                    caplog):
    fail_first_record(store, error)
    acked: list[str] = []

    def ack(delivery: str) -> bool:
        acked.append(delivery)
        return True

    pipeline = WritePipeline(store, ack=ack,
                             batch_size=1, batch_max_age=0.25, give_up_after=1.0,
                             clock=lambda: NOW, sleep=lambda seconds: None)
    data = queue_message("task-completed")
    with caplog.at_level(logging.WARNING, logger="releng_hardware.ingest.pipeline"):
        pipeline.add("d1", parse_message(data["exchange"], data["routing_key"], data["body"], NOW,
                                         ("releng-hardware",)))
        pipeline.settle()
    [logged] = [r for r in caplog.records if r.getMessage().startswith("Redis write failed")]
    assert logged.levelno == level and acked == ["d1"]


@pytest.mark.parametrize("error, level", CASES, ids=case_id)
def test_the_web_logs_a_failed_request_at_the_rule_s_level(fake_redis, monkeypatch, error, level,
                                                           caplog):
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    app = create_app(make_config(), fake_redis, clock=lambda: NOW)
    monkeypatch.setattr(fake_redis, "execute_command", fail)
    monkeypatch.setattr(fake_redis, "pipeline", fail)
    client = app.test_client()
    caplog.set_level(logging.WARNING, logger="releng_hardware")
    for path in ("/machines", "/"):
        caplog.clear()
        assert client.get(path).status_code == 503
        [logged] = [r for r in caplog.records if r.getMessage().startswith("Redis unavailable")]
        assert (path, logged.levelno) == (path, level)
