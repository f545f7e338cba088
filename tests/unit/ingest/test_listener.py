"""The listener's kombu wiring: parsing into the pipeline, channels, connections, liveness."""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from datetime import timedelta
from typing import Any, Callable

import pytest
from amqp.exceptions import ConnectionForced
from kombu import Connection

from releng_hardware.ingest import listener as listener_module
from releng_hardware.ingest.broker import BROKER_TIMEOUT, declare_queue, open_connection, tls_options
from releng_hardware.ingest.listener import Listener
from releng_hardware.tools.simulate import declare_exchanges
from releng_hardware.core.times import format_lastseen
from releng_hardware.ingest.watchdog import Watchdog
from tests.conftest import NOW, make_config, queue_message, wait_for


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
    """A listener whose consumer just started on `channel` (no broker: hooks are called by hand)."""
    def build(monotonic=time.monotonic, **settings) -> Listener:
        config = make_config(pulse_url="amqp://guest:guest@localhost:5672/", **settings)
        listener = Listener(Connection(config.amqp_url), store, config, clock=lambda: NOW,
                            sleep=lambda seconds: None, monotonic=monotonic)
        listener.on_consume_ready(None, channel, [])
        return listener
    return build


def test_messages_are_written_then_acked_once_with_multiple(make_listener, channel, store):
    listener = make_listener(batch_size=3, prefetch=10)
    messages = [sample_message(name, channel) for name in
                ("task-running", "task-completed", "task-exception-deadline-no-worker")]
    for message in messages:
        listener.on_message(message)
    listener.pipeline.settle()
    assert {m.machine_id for m in store.machines()} == {"mdc1:t-linux64-ms-100", "mdc2:t-w1064-ms-281"}
    assert [m.acks for m in messages] == [[], [], [True]]
    assert store.listener_status()["queue"] == listener.config.queue_name


def test_a_new_channel_drops_what_the_old_one_delivered(make_listener, channel, store):
    listener = make_listener(batch_size=2, prefetch=20)
    first = sample_message("task-running", channel)
    listener.on_message(first)
    listener.on_consume_ready(None, Channel(), [])  # reconnected: old delivery tags mean nothing
    late = sample_message("task-completed", channel)  # still in flight from the old channel
    listener.on_message(late)
    listener.pipeline.flush()
    listener.pipeline.settle()
    assert first.acks == [] and late.acks == []
    assert listener.connects == 2


def test_malformed_messages_are_acked_counted_and_logged_once(make_listener, channel, store, caplog):
    listener = make_listener(batch_size=3, prefetch=10)
    bad = [sample_message("task-running", channel, body=b"\xff" * 5000),
           sample_message("task-running", channel, body=b"[]")]
    good = sample_message("task-completed", channel)
    with caplog.at_level(logging.WARNING, logger="releng_hardware.ingest.listener"):
        for message in (*bad, good):
            listener.on_message(message)
        listener.pipeline.settle()
    assert good.acks == [True]
    assert listener.pipeline.counters.malformed == 2
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
    listener.pipeline.settle()
    assert message.acks == [True] and listener.pipeline.counters.skip_reasons == {"parser-error": 1}


def test_messages_handed_over_while_stopping_are_left_unacked(make_listener, channel, store):
    listener = make_listener(batch_size=1, prefetch=10)
    listener.stop()
    message = sample_message("task-completed", channel)
    listener.on_message(message)
    listener.pipeline.settle()
    assert message.acks == [] and store.machines() == []


def test_backlog_is_logged_and_a_large_one_warned_about(make_listener, caplog):
    class Declaring(Channel):
        def __init__(self, backlog: int) -> None:
            self.backlog = backlog

        def queue_declare(self, name, passive):
            assert passive
            return name, self.backlog, 1

    listener = make_listener(backlog_warning=5000)
    with caplog.at_level(logging.INFO, logger="releng_hardware.ingest.listener"):
        listener.on_consume_ready(None, Declaring(12), [])
        listener.on_consume_ready(None, Declaring(9000), [])
    quiet, loud = [r for r in caplog.records if "holds" in r.getMessage()]
    assert quiet.levelno == logging.INFO and "12 messages" in quiet.getMessage()
    assert loud.levelno == logging.WARNING and "Pulse deletes queues" in loud.getMessage()


def counting_sweep_steps(store) -> list[int]:
    """Make the store count its retention sweep steps; the list grows by one a step."""
    steps: list[int] = []
    remove_expired = store.remove_expired

    def counted(*args, **kwargs):
        steps.append(1)
        return remove_expired(*args, **kwargs)
    store.remove_expired = counted
    return steps


def test_each_heartbeat_tick_runs_one_retention_step_on_the_writer(make_listener, store):
    store.preload({"mdc1:gone-1": NOW - timedelta(days=31), "mdc1:kept-1": NOW - timedelta(days=29)})
    steps = counting_sweep_steps(store)
    clock = [100.0]
    listener = make_listener(retention=30 * 86400.0, monotonic=lambda: clock[0])
    listener.on_iteration()
    wait_for(lambda: set(store.lastseen_by_machine()) == {"mdc1:kept-1"}, 5,
             "the retention step did not remove the machine past RETENTION")
    clock[0] += 10  # 10 s later: not yet the next step
    listener.on_iteration()
    listener.pipeline.run_in_order(lambda: None).result(5)  # whatever was queued has run
    assert len(steps) == 1
    clock[0] += 20
    listener.on_iteration()
    listener.pipeline.run_in_order(lambda: None).result(5)
    assert len(steps) == 2


def test_retention_zero_never_sweeps(make_listener, store):
    store.preload({"mdc1:old-1": NOW - timedelta(days=3650)})
    steps = counting_sweep_steps(store)
    clock = [100.0]
    listener = make_listener(retention=0.0, monotonic=lambda: clock[0])
    listener.on_iteration()
    assert listener.sweep() is None
    assert steps == [] and list(store.lastseen_by_machine()) == ["mdc1:old-1"]


def test_queue_is_durable_shared_and_bound_passively():
    queue = declare_queue(make_config(pulse_url="amqp://releng:pw@localhost:5672/", pulse_queue_name="hw"))
    assert queue.name == "queue/releng/hw"
    assert (queue.durable, queue.auto_delete, queue.exclusive) == (True, False, False)
    assert len(queue.bindings) == 5
    assert all(b.exchange.passive and b.exchange.type == "topic" for b in queue.bindings)


def test_pulse_connection_verifies_certificate_and_host_name():
    config = make_config(amqp_user="releng", amqp_pass="pw")
    connection = open_connection(config)
    assert connection.ssl == {"server_hostname": None, "cert_reqs": ssl.CERT_REQUIRED}
    assert connection.heartbeat == 60 and connection.port == 5671
    assert connection.connect_timeout == BROKER_TIMEOUT
    assert tls_options("amqp://guest:guest@localhost:5672/") is None


class BrokerConnection:
    """A connection whose polite close would wait for a broker that never answers."""

    connection_errors = (ConnectionForced, OSError)

    def __init__(self) -> None:
        self.calls: list[str] = []

    def connect(self) -> None:
        self.calls.append("connect")

    @property
    def connected(self) -> bool:
        return False

    def release(self) -> None:
        self.calls.append("release")  # Channel.Close, then waiting for Close-Ok

    def collect(self) -> None:
        self.calls.append("collect")  # our socket closed, no word to the broker


@pytest.mark.parametrize("error", [ConnectionForced("Too many heartbeats missed"),
                                   OSError("Connection reset"), RuntimeError("a surprise")])
def test_after_an_error_the_connection_is_dropped_without_waiting_for_the_broker(
        make_listener, error):
    listener = make_listener()
    connection = BrokerConnection()
    listener.create_connection = lambda: connection
    with pytest.raises(type(error)):
        with listener.establish_connection():
            raise error
    assert connection.calls == ["connect", "collect"]


def test_a_clean_stop_closes_the_connection_politely(make_listener):
    listener = make_listener()
    connection = BrokerConnection()
    listener.create_connection = lambda: connection
    with listener.establish_connection():
        pass
    assert connection.calls == ["connect", "release"]


class Unreachable(BrokerConnection):
    """A broker connection that fails to connect while `refusals` has some left."""

    def __init__(self, refusals: list[Exception]) -> None:
        super().__init__()
        self.refusals = refusals

    def connect(self) -> None:
        super().connect()
        if self.refusals:
            raise self.refusals.pop(0)


def connecting(refusals: list[Exception]) -> tuple[list[Unreachable], Callable[[], Unreachable]]:
    """A listener's create_connection handing out Unreachable connections, and those it made."""
    made: list[Unreachable] = []

    def create() -> Unreachable:
        made.append(Unreachable(refusals))
        return made[-1]
    return made, create


class FakeTime:
    """A hand-moved monotonic clock and a sleep that moves it, recording each step."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_an_unreachable_broker_is_tried_again_after_each_backoff(make_listener, caplog):
    fake = FakeTime()
    listener = make_listener(monotonic=fake.monotonic)
    listener.sleep = fake.sleep
    connections, listener.create_connection = connecting(
        [OSError("Connection refused"), ConnectionForced("shutting down")])
    with caplog.at_level(logging.WARNING, logger="releng_hardware.ingest.listener"):
        with listener.establish_connection():
            pass
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all(w.startswith("cannot reach broker amqp://guest:***@")
                                      and "; retrying in " in w for w in warnings)
    assert [c.calls for c in connections] == [["connect", "collect"]] * 2 + [["connect", "release"]]
    # full jitter: the first wait at most 1s, the second 2s
    assert sum(fake.slept) <= 3.0 + 1e-9 and fake.slept


def test_a_stop_during_the_wait_between_connection_attempts_ends_them(make_listener):
    fake = FakeTime()
    listener = make_listener(monotonic=fake.monotonic)

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        listener.stop()

    listener.sleep = sleep
    connections, listener.create_connection = connecting([OSError("Connection refused")] * 5)
    with pytest.raises(listener_module.StopListening):
        with listener.establish_connection():
            pass
    assert len(connections) == 1 and len(fake.slept) == 1


@pytest.mark.parametrize("error, level", [(ConnectionForced("Too many heartbeats missed"),
                                           logging.WARNING),
                                          (RuntimeError("a surprise"), logging.ERROR)])
def test_the_consume_loop_reconnects_after_any_error_with_backoff(make_listener, monkeypatch,
                                                                  caplog, error, level):
    fake = FakeTime()
    listener = make_listener(monotonic=fake.monotonic)
    listener.sleep = fake.sleep
    rounds: list[int] = []

    def consume(**kwargs: Any) -> Any:
        rounds.append(1)
        if len(rounds) == 3:
            listener.stop()
            return
        yield
        raise error

    monkeypatch.setattr(listener, "consume", consume)
    with caplog.at_level(logging.WARNING, logger="releng_hardware.ingest.listener"):
        listener.run_until_stopped()
    reconnecting = [r for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert len(rounds) == 3 and [r.levelno for r in reconnecting] == [level, level]
    assert (reconnecting[0].exc_info is not None) == (level == logging.ERROR)


class Stalling(Connection):
    """An in-memory broker connection whose drain_events blocks, once told to, like a dead socket."""

    stall = threading.Event()
    stalled = threading.Event()
    released = threading.Event()

    def drain_events(self, **kwargs: Any) -> Any:
        if self.stall.is_set():
            self.stalled.set()
            self.released.wait(30)
        return super().drain_events(**kwargs)


def test_a_stuck_consume_loop_stops_the_heartbeat_and_the_watchdog_fires(store, app_factory):
    """Only loop progress writes the stored heartbeat, so /__heartbeat__ fails when it is stuck."""
    now = [NOW]
    watchdog_clock = [0.0]
    fired: list[float] = []
    config = make_config(pulse_url="memory://", batch_max_age=0.05)
    with Connection("memory://") as setup:
        declare_exchanges(setup.default_channel)
    watchdog = Watchdog(60, on_stuck=fired.append, monotonic=lambda: watchdog_clock[0])
    listener = Listener(Stalling("memory://"), store, config, watchdog=watchdog,
                        clock=lambda: now[0], heartbeat_every=0)
    thread = threading.Thread(target=listener.run_until_stopped, daemon=True)
    thread.start()
    try:
        wait_for(lambda: listener.connects == 1, 10, "the listener never consumed")
        now[0] = NOW + timedelta(minutes=1)
        watchdog_clock[0] = 1000.0
        wait_for(lambda: store.listener_status().get("heartbeat_at") == format_lastseen(now[0]), 10,
                 "the consume loop did not write its heartbeat")
        wait_for(lambda: watchdog.stalled_for() == 0, 10, "the consume loop did not show progress")
        alive = app_factory(now=now[0]).test_client().get("/__heartbeat__").get_json()

        Stalling.stall.set()
        assert Stalling.stalled.wait(10)
        now[0] = NOW + timedelta(minutes=20)
        watchdog_clock[0] = 2000.0
        threading.Event().wait(0.5)  # ten turns of a loop that still ran
        stuck = app_factory(now=now[0]).test_client().get("/__heartbeat__")
        heartbeat_at = store.listener_status()["heartbeat_at"]
        watchdog_fired = watchdog.check()
    finally:
        listener.stop()
        Stalling.released.set()
        thread.join(10)

    assert alive["checks"]["listener"] != "error", alive
    assert heartbeat_at == format_lastseen(NOW + timedelta(minutes=1))
    assert stuck.status_code == 500 and stuck.get_json()["checks"]["listener"] == "error"
    assert watchdog_fired and fired == [1000.0]
    assert not thread.is_alive()
