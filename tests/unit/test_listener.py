"""The listener's batching and acking, with stand-in messages and fakeredis."""

from __future__ import annotations

import json
import logging

import pytest
from kombu import Connection

from releng_hardware import listener as listener_module
from releng_hardware.listener import Listener, backoff_delay, declare_queue, open_connection, tls_options
from tests.conftest import NOW, make_config, queue_message


class Channel:
    """Stands in for an AMQP channel: only identity matters to the listener."""


class Message:
    """Records acks like kombu's Message, nothing else."""

    def __init__(self, exchange: str, routing_key: str, body: bytes, channel: Channel) -> None:
        self.delivery_info = {"exchange": exchange, "routing_key": routing_key}
        self.body = body
        self.channel = channel
        self.content_type = "application/json"
        self.acks: list[bool] = []

    def ack(self, multiple: bool = False) -> None:
        self.acks.append(multiple)


def sample_message(name: str, channel: Channel, body: bytes | None = None) -> Message:
    data = queue_message(name)
    return Message(data["exchange"], data["routing_key"],
                   json.dumps(data["body"]).encode() if body is None else body, channel)


@pytest.fixture
def channel() -> Channel:
    return Channel()


@pytest.fixture
def make_listener(store, channel):
    def build(sleep=lambda seconds: None, **settings) -> Listener:
        config = make_config(pulse_url="amqp://guest:guest@localhost:5672/", **settings)
        listener = Listener(Connection(config.amqp_url), store, config, clock=lambda: NOW, sleep=sleep)
        listener._channel = channel
        return listener
    return build


def test_batch_is_written_then_acked_once_with_multiple(make_listener, channel, store):
    listener = make_listener(batch_size=3, prefetch=10)
    messages = [sample_message(name, channel) for name in
                ("task-running", "task-completed", "task-exception-deadline-no-worker")]
    listener.on_message(messages[0])
    listener.on_message(messages[1])
    assert store.machines() == [] and all(not m.acks for m in messages)
    listener.on_message(messages[2])  # the batch is full
    listener.settle()
    assert {m.machine_id for m in store.machines()} == {"mdc1:t-linux64-ms-100", "mdc2:t-w1064-ms-281"}
    assert [m.acks for m in messages] == [[], [], [True]]
    assert (listener.counters.processed, listener.counters.written, listener.counters.skipped) == (3, 2, 1)


def test_an_old_batch_is_flushed_on_the_next_iteration(make_listener, channel, store):
    listener = make_listener(batch_size=100, batch_max_age=0.25)
    ticks = iter([100.0, 100.1, 100.1, 100.4, 100.4, 100.4])
    listener.monotonic = lambda: next(ticks)
    message = sample_message("task-running", channel)
    listener.on_message(message)
    listener.on_iteration()
    assert message.acks == []
    listener.on_iteration()
    listener.settle()
    assert message.acks == [True] and len(store.machines()) == 1


def test_redis_outage_holds_the_ack_until_the_write_succeeds(make_listener, channel, store, fake_server):
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 5:
            fake_server.connected = True

    listener = make_listener(sleep=sleep, batch_size=1, prefetch=10)
    fake_server.connected = False
    message = sample_message("task-completed", channel)
    listener.on_message(message)
    listener.settle()
    assert len(sleeps) >= 5
    assert message.acks == [True]
    assert store.machine("mdc2:t-w1064-ms-281") is not None


def test_stopping_during_an_outage_leaves_the_batch_unacked(make_listener, channel, fake_server):
    listener = make_listener(batch_size=1, prefetch=10)
    listener.sleep = lambda seconds: listener.stop()
    fake_server.connected = False
    message = sample_message("task-completed", channel)
    listener.on_message(message)
    listener.settle()
    assert message.acks == [] and listener.should_stop


def test_no_ack_goes_to_a_channel_that_was_replaced(make_listener, channel, store):
    listener = make_listener(batch_size=2, prefetch=10)
    listener.on_message(sample_message("task-running", channel))
    listener._channel = Channel()  # reconnected: old delivery tags mean nothing now
    late = sample_message("task-completed", channel)
    listener.on_message(late)
    listener.settle()
    assert late.acks == []


def test_a_new_channel_drops_what_the_old_one_delivered(make_listener, channel, store):
    listener = make_listener(batch_size=10, prefetch=20)
    listener.on_message(sample_message("task-running", channel))
    listener.on_consume_ready(None, Channel(), [])
    listener.flush()
    listener.settle()
    assert store.machines() == []
    assert store.listener_status()["queue"] == listener.config.queue_name


def test_malformed_messages_are_acked_counted_and_logged_once(make_listener, channel, store, caplog):
    listener = make_listener(batch_size=3, prefetch=10)
    bad = [sample_message("task-running", channel, body=b"\xff" * 5000),
           sample_message("task-running", channel, body=b"[]")]
    good = sample_message("task-completed", channel)
    with caplog.at_level(logging.WARNING, logger="releng_hardware.listener"):
        for message in (*bad, good):
            listener.on_message(message)
        listener.settle()
    assert good.acks == [True]
    assert listener.counters.malformed == 2
    assert store.listener_status()["malformed"] == "2"
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 2 and all(len(line) < 600 for line in warnings)


def test_a_bug_in_parsing_does_not_escape_the_consumer(make_listener, channel, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(listener_module, "parse_message", explode)
    listener = make_listener(batch_size=1, prefetch=10)
    message = sample_message("task-running", channel)
    listener.on_message(message)
    listener.settle()
    assert message.acks == [True] and listener.counters.skip_reasons == {"parser-error": 1}


def test_queue_is_durable_shared_and_bound_passively():
    queue = declare_queue(make_config(pulse_url="amqp://releng:pw@localhost:5672/", pulse_queue_name="hw"))
    assert queue.name == "queue/releng/hw"
    assert (queue.durable, queue.auto_delete, queue.exclusive) == (True, False, False)
    assert len(queue.bindings) == 5
    assert all(b.exchange.passive and b.exchange.type == "topic" for b in queue.bindings)


@pytest.mark.parametrize("attempt", range(0, 30, 3))
def test_backoff_grows_is_capped_and_jittered(attempt):
    assert backoff_delay(attempt, rand=lambda: 1.0) == min(30.0, 2 ** attempt)
    assert backoff_delay(attempt, rand=lambda: 0.0) == 0.0


def test_backlog_is_logged_and_a_large_one_warned_about(make_listener, caplog):
    class Declaring(Channel):
        def __init__(self, backlog: int) -> None:
            self.backlog = backlog

        def queue_declare(self, name, passive):
            assert passive
            return name, self.backlog, 1

    listener = make_listener(backlog_warning=5000)
    with caplog.at_level(logging.INFO, logger="releng_hardware.listener"):
        listener._report_backlog(Declaring(12))
        listener._report_backlog(Declaring(9000))
    quiet, loud = [r for r in caplog.records if "holds" in r.getMessage()]
    assert quiet.levelno == logging.INFO and "12 messages" in quiet.getMessage()
    assert loud.levelno == logging.WARNING and "Pulse deletes queues" in loud.getMessage()


def test_any_redis_error_is_retried_without_acking(make_listener, channel, store, caplog):
    import redis
    listener = make_listener(batch_size=1, prefetch=10)
    real_record = store.record
    failures = iter([redis.ResponseError("OOM command not allowed"), None])

    def flaky_record(*args, **kwargs):
        failure = next(failures)
        if failure:
            raise failure
        return real_record(*args, **kwargs)

    store.record = flaky_record
    message = sample_message("task-completed", channel)
    with caplog.at_level(logging.ERROR, logger="releng_hardware.listener"):
        listener.on_message(message)
        listener.settle()
    assert message.acks == [True] and store.machine("mdc2:t-w1064-ms-281") is not None
    assert any("OOM" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_messages_handed_over_while_stopping_are_left_unacked(make_listener, channel, store):
    listener = make_listener(batch_size=1, prefetch=10)
    listener.stop()
    message = sample_message("task-completed", channel)
    listener.on_message(message)
    assert message.acks == [] and store.machines() == []


def test_batches_are_acked_in_order_each_after_its_own_write(make_listener, channel, store):
    listener = make_listener(batch_size=1, prefetch=10)
    gate = __import__("threading").Event()
    real_record = store.record
    store.record = lambda *args, **kwargs: (gate.wait(5), real_record(*args, **kwargs))[1]
    messages = [sample_message(name, channel) for name in ("task-running", "task-completed")]
    for message in messages:
        listener.on_message(message)
    listener.settle(block=False)
    assert [m.acks for m in messages] == [[], []]  # writes held back: nothing acked
    gate.set()
    listener.settle()
    assert [m.acks for m in messages] == [[True], [True]]


def test_at_most_two_writes_are_in_flight(make_listener, channel, store):
    listener = make_listener(batch_size=1, prefetch=10)
    started = []
    real_record = store.record

    def slow_record(*args, **kwargs):
        started.append(len(listener._writes))
        __import__("time").sleep(0.05)
        return real_record(*args, **kwargs)

    store.record = slow_record
    for _ in range(6):
        listener.on_message(sample_message("task-running", channel))
        assert len(listener._writes) <= 2
    listener.settle()
    assert len(started) == 6 and not listener._writes


def test_pulse_connection_verifies_certificate_and_host_name():
    import ssl
    config = make_config(amqp_user="releng", amqp_pass="pw")
    connection = open_connection(config)
    assert connection.ssl == {"server_hostname": None, "cert_reqs": ssl.CERT_REQUIRED}
    assert connection.heartbeat == 60 and connection.port == 5671
    assert tls_options("amqp://guest:guest@localhost:5672/") is None


def test_each_heartbeat_tick_runs_one_retention_step_on_the_writer(make_listener, store):
    from datetime import timedelta
    store.preload({"mdc1:gone-1": NOW - timedelta(days=31), "mdc1:kept-1": NOW - timedelta(days=29)})
    listener = make_listener(retention=30 * 86400.0)
    ticks = iter([100.0, 100.0, 110.0])
    listener.monotonic = lambda: next(ticks)
    listener.on_iteration()
    listener._sweep.result(timeout=5)
    assert set(store.lastseen_by_machine()) == {"mdc1:kept-1"}
    first = listener._sweep
    listener.on_iteration()  # 10 s later: not yet the next step
    assert listener._sweep is first


def test_retention_zero_never_sweeps(make_listener, store):
    from datetime import timedelta
    store.preload({"mdc1:old-1": NOW - timedelta(days=3650)})
    listener = make_listener(retention=0.0)
    listener.on_iteration()
    assert listener._sweep is None and list(store.lastseen_by_machine()) == ["mdc1:old-1"]
