"""Issue 3's faults, against the real RabbitMQ and Redis, with the listener as a real process.

Each test compares what Redis holds afterwards with one uninterrupted, in-order application
of the same messages (`Store.record` under a separate prefix), so a lost, doubled or
misapplied message fails it.
"""

from __future__ import annotations

import copy
import random
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import orjson
import pytest
from kombu import Connection

from releng_hardware.ingest.broker import bound_waits, close_connection, drop_connection, open_connection
from releng_hardware.core.config import Config
from releng_hardware.core.events import WorkerEvent, bindings
from releng_hardware.tools.simulate import Message, backlog, declare_exchanges
from releng_hardware.store.machines import Store
from releng_hardware.core.times import utcnow
from tests.conftest import AMQP_URL, make_config, unique, wait_for
from tests.integration.support import (AMQP_PORT, ListenerProcess, MachineState, Publisher,
                                              RabbitNode, Raw, RedisServer, SilentProxy,
                                              broker_connections,
                                              close_broker_connections, diff_states,
                                              events_of, listener_env, machine_state, processed,
                                              publish_all, queue_bindings, queue_depth,
                                              reference_state, unbind_queue, wait_drained)

MAX_LOG_LINE = 1000


@pytest.fixture
def start_listener(amqp_config: Config, real_redis: Any,
                   tmp_path: Path) -> Iterator[Callable[..., ListenerProcess]]:
    """Start `listen_to_pulse.py` processes on the test's queue; all are killed afterwards."""
    started: list[ListenerProcess] = []

    def start(**env: str) -> ListenerProcess:
        process = ListenerProcess(listener_env(amqp_config, **env),
                                  tmp_path / f"listener-{len(started) + 1}.log")
        started.append(process)
        return process
    yield start
    for process in started:
        process.close()


@pytest.fixture
def reference(real_redis: Any, redis_prefix: str,
              provisioner_id: str) -> Callable[[Sequence[Message]], MachineState]:
    """The machine state one in-order pass over the messages gives (under a prefix of its own)."""
    def build(messages: Sequence[Message]) -> MachineState:
        return reference_state(messages, provisioner_id, Store(real_redis, redis_prefix + "reference:"))
    return build


def redis_retries(listener: ListenerProcess) -> int:
    """How many failed Redis writes the listener has logged (each line names its retry)."""
    return len(re.findall(r"Redis .*; retry \d+", listener.log()))


def assert_same_state(store: Store, expected: MachineState, settle: float = 5.0) -> None:
    """Every machine's lastseen and details equal the reference's (given `settle` s to get there)."""
    # an empty queue only proves the writes were done if acks follow writes: a broken
    # listener may still hold a batch, so give it a moment before calling anything lost
    deadline = time.monotonic() + settle
    while (actual := machine_state(store)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert actual == expected, diff_states(actual, expected)


# -- 1. crash ---------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_gives_the_state_of_one_uninterrupted_run(
        amqp_config: Config, real_store: Store, provisioner_id: str, start_listener: Any,
        reference: Any) -> None:
    """SIGKILL while 3000 messages stream in, restart: nothing lost, nothing counted twice."""
    messages = backlog(3000, machines=60, end=utcnow(), provisioner_id=provisioner_id)
    # big, slow batches: the crash almost surely finds messages taken but not yet written
    first = start_listener(BATCH_SIZE="500", BATCH_MAX_AGE="2")
    first.wait_consuming()
    publisher = Publisher(messages, rate=600)
    publisher.start()
    wait_for(lambda: processed(real_store) >= 500, 30, "the listener did not get going")
    # well into the next batch: hundreds of messages taken but not yet written
    wait_for(lambda: publisher.published >= 800, 30, "the publisher stalled")

    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    published_at_crash = publisher.published
    second = start_listener()
    second.wait_consuming()
    wait_drained(amqp_config.queue_name, 60, publisher)

    assert published_at_crash < len(messages), "the crash came after the stream ended"
    assert second.alive()
    assert_same_state(real_store, reference(messages))


# -- 2. broker drop ---------------------------------------------------------------

@pytest.mark.slow
def test_broker_dropping_the_connection_the_same_process_reconnects_rebinds_and_loses_nothing(
        amqp_config: Config, real_store: Store, provisioner_id: str, start_listener: Any,
        reference: Any) -> None:
    """Broker-side closes (one idle with the bindings removed, two mid-stream): same pid recovers."""
    messages = backlog(3000, machines=50, end=utcnow(), provisioner_id=provisioner_id)
    queue = amqp_config.queue_name
    listener = start_listener()
    listener.wait_consuming(1)
    ports = listener.broker_ports()
    assert ports, "the listener has no connection to the broker"
    rows = broker_connections(ports)
    # AMQP heartbeats on: a dead peer is noticed instead of waiting on a silent socket forever
    assert rows and all(int(row["timeout"]) > 0 for row in rows), rows
    expected_bindings = set(bindings(amqp_config.provisioner_ids))
    assert queue_bindings(queue) == expected_bindings
    connected_at = [real_store.listener_status()["last_connected_at"]]

    def drop(connection_number: int) -> None:
        nonlocal ports
        assert close_broker_connections(ports) >= 1
        listener.wait_consuming(connection_number, timeout=45)
        new_ports = listener.broker_ports()
        assert new_ports and not new_ports & ports, "the connection was not replaced"
        ports = new_ports
        connected_at.append(real_store.listener_status()["last_connected_at"])

    # while idle, take the bindings away behind its back: only a re-declaration brings them back
    unbind_queue(queue, expected_bindings)
    assert queue_bindings(queue) == set()
    drop(2)
    assert queue_bindings(queue) == expected_bindings

    publisher = Publisher(messages, rate=200)  # 15 s: room for two drops on a busy machine
    publisher.start()
    for connection_number, threshold in ((3, 500), (4, 1300)):
        wait_for(lambda threshold=threshold: processed(real_store) >= threshold, 30, "the listener fell behind")
        drop(connection_number)
    published_during_drops = publisher.published
    wait_drained(queue, 60, publisher)

    assert published_during_drops < len(messages), "the drops came after the stream ended"
    assert listener.alive(), listener.log()[-3000:]
    assert len(set(connected_at)) == 4, connected_at
    assert len(re.findall(r"reconnecting in", listener.log())) == 3
    assert int(broker_connections(ports)[0]["timeout"]) > 0
    assert_same_state(real_store, reference(messages))


def stream_to_listener(start_listener: Callable[..., ListenerProcess], store: Store,
                       messages: Sequence[Message], *, listener_url: str,
                       publisher_url: str) -> tuple[ListenerProcess, Publisher]:
    """A listener with 2 s AMQP heartbeats, `messages` streaming in at 200 a second, once it
    has processed 300 of them."""
    listener = start_listener(PULSE_URL=listener_url, AMQP_HEARTBEAT="2")
    listener.wait_consuming(1)
    publisher = Publisher(messages, rate=200, url=publisher_url)
    publisher.start()
    wait_for(lambda: processed(store) >= 300, 30, "the listener did not get going")
    return listener, publisher


def assert_recovered_in_process(listener: ListenerProcess, store: Store, expected: MachineState) -> None:
    """The same process lost its broker connection, lives on, and lost nothing."""
    assert listener.alive(), listener.log()[-3000:]
    assert "lost the broker connection" in listener.log()
    assert_same_state(store, expected)


@pytest.fixture
def silent_proxy() -> Iterator[SilentProxy]:
    """A proxy to the broker that can silence the connections through it; closed afterwards."""
    proxy = SilentProxy(AMQP_PORT)
    yield proxy
    proxy.close()


@pytest.mark.slow
def test_a_silent_connection_is_dropped_or_closed_without_waiting_for_the_broker(
        silent_proxy: SilentProxy) -> None:
    """kombu's release() would wait forever for Close-Ok; drop and close give up on the peer."""
    config = make_config(pulse_url=silent_proxy.url())
    for end in (drop_connection, close_connection):
        connection = open_connection(config)
        connection.connect()
        channel = connection.default_channel
        assert channel.is_open
        assert silent_proxy.silence() == 1
        ending = threading.Thread(target=end, args=(connection,), daemon=True)
        ending.start()
        ending.join(30)
        assert not ending.is_alive(), f"{end.__name__} waited for a silent broker"
        assert not connection.connected


@pytest.mark.slow
def test_a_request_to_a_silent_broker_gives_up_instead_of_waiting_forever(
        silent_proxy: SilentProxy) -> None:
    """A declare on a link gone silent fails (a connection error, so the listener reconnects)."""
    connection = open_connection(make_config(pulse_url=silent_proxy.url()))
    connection.connect()
    bound_waits(connection)
    channel = connection.default_channel
    assert silent_proxy.silence() == 1
    outcome: list[BaseException] = []

    def declare() -> None:
        try:
            channel.queue_declare(f"queue/guest/{unique('silent')}", passive=True)
        except BaseException as exc:
            outcome.append(exc)
    asking = threading.Thread(target=declare, daemon=True)
    asking.start()
    asking.join(60)
    drop_connection(connection)
    assert not asking.is_alive(), "the request waited for the silent broker"
    assert outcome and isinstance(outcome[0], connection.connection_errors), outcome


@pytest.mark.slow
def test_silent_broker_connection_the_same_process_notices_reconnects_and_loses_nothing(
        amqp_config: Config, real_store: Store, provisioner_id: str, start_listener: Any,
        silent_proxy: SilentProxy, reference: Any) -> None:
    """The link to the broker goes silent mid-stream (nothing closed): noticed, dropped, replaced."""
    messages = backlog(3000, machines=40, end=utcnow(), provisioner_id=provisioner_id)
    listener, publisher = stream_to_listener(start_listener, real_store, messages,
                                             listener_url=silent_proxy.url(), publisher_url=AMQP_URL)

    assert silent_proxy.silence() >= 1
    silenced_at = time.monotonic()
    listener.wait_consuming(2, timeout=60)
    print(f"silent connection replaced after {time.monotonic() - silenced_at:.1f}s "
          "with AMQP_HEARTBEAT=2s")
    published_at_reconnect = publisher.published
    wait_drained(amqp_config.queue_name, 90, publisher)

    assert published_at_reconnect < len(messages), "the silence came after the stream ended"
    assert_recovered_in_process(listener, real_store, reference(messages))


@pytest.mark.slow
def test_broker_restart_the_same_process_reconnects_and_loses_nothing(
        amqp_config: Config, real_store: Store, provisioner_id: str, start_listener: Any,
        own_rabbit: RabbitNode, reference: Any) -> None:
    """stop_app / start_app of the test's own RabbitMQ node mid-stream: same pid, nothing lost."""
    messages = backlog(3000, machines=40, end=utcnow(), provisioner_id=provisioner_id)
    before, after = messages[:2000], messages[2000:]
    with Connection(own_rabbit.url) as connection:
        declare_exchanges(connection.default_channel)
    listener, publisher = stream_to_listener(start_listener, real_store, before,
                                             listener_url=own_rabbit.url, publisher_url=own_rabbit.url)

    own_rabbit.ctl("stop_app")
    stopped_at = time.monotonic()
    published_at_stop = publisher.published
    wait_for(lambda: "cannot reach broker" in listener.log(), 60,
             "the listener did not try to reconnect while the broker was down")
    starting_at = time.monotonic()
    own_rabbit.ctl("start_app")
    started_at = time.monotonic()
    listener.wait_consuming(2, timeout=90)
    reconnected_at = time.monotonic()
    print(f"broker down {starting_at - stopped_at:.1f}s, start_app took {started_at - starting_at:.1f}s; "
          f"the listener consumed again {reconnected_at - starting_at:.1f}s after start_app began")
    publisher.join(120)
    assert publisher.done, f"publishing failed: {publisher.error!r}"
    publish_all(after, url=own_rabbit.url)
    wait_drained(amqp_config.queue_name, 90, ctl=own_rabbit.ctl)

    assert published_at_stop < len(before), "the restart came after the stream ended"
    assert_recovered_in_process(listener, real_store, reference(messages))


# -- 3. Redis stall and outage --------------------------------------------------------

@pytest.mark.slow
def test_redis_stalled_for_10s_nothing_is_acked_until_written_and_everything_lands(
        amqp_config: Config, redis_prefix: str, provisioner_id: str, start_listener: Any,
        own_redis: RedisServer, reference: Any) -> None:
    """SIGSTOP Redis for ~10 s under traffic: the listener lives, acks nothing it could not write."""
    messages = backlog(1600, machines=40, end=utcnow(), provisioner_id=provisioner_id)
    before, during = messages[:600], messages[600:]
    listener = start_listener(REDIS_URL=own_redis.url)
    listener.wait_consuming()
    publish_all(before)
    wait_drained(amqp_config.queue_name, 30)

    own_redis.pause()
    stalled_at = time.monotonic()
    publish_all(during)
    wait_for(lambda: queue_depth(amqp_config.queue_name)[1] > 0, 10,
             "the listener took no message while Redis was stalled")
    time.sleep(max(0.0, 10 - (time.monotonic() - stalled_at)))
    ready, unacked = queue_depth(amqp_config.queue_name)
    alive_while_stalled = listener.alive()
    own_redis.resume()

    assert alive_while_stalled, listener.log()[-3000:]
    assert unacked > 0
    assert ready + unacked == len(during), "messages were acked while Redis could not store them"
    wait_drained(amqp_config.queue_name, 60)
    assert listener.alive()
    assert redis_retries(listener) >= 1
    assert_same_state(Store(own_redis.client(), redis_prefix), reference(messages))


@pytest.mark.slow
def test_redis_refusing_connections_the_listener_retries_and_everything_published_meanwhile_lands(
        amqp_config: Config, redis_prefix: str, provisioner_id: str, start_listener: Any,
        own_redis: RedisServer, reference: Any) -> None:
    """Kill Redis, publish, restart it empty on the same port: every message of the outage lands."""
    messages = backlog(1200, machines=40, end=utcnow(), provisioner_id=provisioner_id)
    before, during = messages[:300], messages[300:]
    listener = start_listener(REDIS_URL=own_redis.url)
    listener.wait_consuming()
    publish_all(before)
    wait_drained(amqp_config.queue_name, 30)

    own_redis.kill()
    publish_all(during)
    wait_for(lambda: queue_depth(amqp_config.queue_name)[1] > 0, 10,
             "the listener took no message while Redis was down")
    wait_for(lambda: redis_retries(listener) >= 3, 20, "the listener did not retry Redis")
    ready, unacked = queue_depth(amqp_config.queue_name)
    alive_while_down = listener.alive()
    own_redis.start()

    assert alive_while_down, listener.log()[-3000:]
    assert ready + unacked == len(during), "messages were acked while Redis was down"
    wait_drained(amqp_config.queue_name, 60)
    assert listener.alive()
    # the restarted server is empty: it holds exactly what was published during the outage
    assert_same_state(Store(own_redis.client(), redis_prefix), reference(during))


@pytest.mark.slow
def test_crash_while_redis_is_down_loses_nothing_after_restart(
        amqp_config: Config, redis_prefix: str, provisioner_id: str, start_listener: Any,
        own_redis: RedisServer, reference: Any) -> None:
    """SIGKILL the listener while it holds messages it cannot write: they come again, none lost."""
    messages = backlog(900, machines=30, end=utcnow(), provisioner_id=provisioner_id)
    first = start_listener(REDIS_URL=own_redis.url)
    first.wait_consuming()
    own_redis.kill()
    publish_all(messages)
    wait_for(lambda: queue_depth(amqp_config.queue_name)[1] > 0, 10,
             "the listener took no message while Redis was down")
    wait_for(lambda: redis_retries(first) >= 1, 10, "the listener never tried Redis")

    first.signal(signal.SIGKILL)
    first.wait(10)
    own_redis.start()
    second = start_listener(REDIS_URL=own_redis.url)
    second.wait_consuming()
    wait_drained(amqp_config.queue_name, 60)

    assert_same_state(Store(own_redis.client(), redis_prefix), reference(messages))


# -- 4. SIGTERM -------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_with_messages_flowing_exits_0_within_10s_and_a_new_listener_loses_nothing(
        amqp_config: Config, real_store: Store, provisioner_id: str, start_listener: Any,
        reference: Any) -> None:
    """SIGTERM mid-stream: exit 0 well within Heroku's 30 s; the rest is drained by the next one."""
    messages = backlog(2000, machines=40, end=utcnow(), provisioner_id=provisioner_id)
    first = start_listener()
    first.wait_consuming()
    publisher = Publisher(messages, rate=500)
    publisher.start()
    wait_for(lambda: processed(real_store) >= 500, 30, "the listener did not get going")

    published_at_stop = publisher.published
    signalled = time.monotonic()
    first.signal(signal.SIGTERM)
    code = first.wait(30)
    took = time.monotonic() - signalled
    second = start_listener()
    second.wait_consuming()
    wait_drained(amqp_config.queue_name, 60, publisher)

    assert code == 0, first.log()[-3000:]
    assert took < 10, first.log()[-3000:]
    assert published_at_stop < len(messages), "SIGTERM came after the stream ended"
    assert "stopped after" in first.log()
    assert_same_state(real_store, reference(messages))


@pytest.mark.slow
def test_sigterm_while_redis_is_stalled_exits_0_within_10s_and_nothing_is_lost(
        amqp_config: Config, redis_prefix: str, provisioner_id: str, start_listener: Any,
        own_redis: RedisServer, reference: Any) -> None:
    """SIGTERM while a write hangs on a stalled Redis (production settings): prompt exit, no loss."""
    messages = backlog(1200, machines=30, end=utcnow(), provisioner_id=provisioner_id)
    # the default 3 s Redis timeout and 1000 unacked messages at most, in valid batches of 100
    first = start_listener(REDIS_URL=own_redis.url, REDIS_TIMEOUT="3", BATCH_SIZE="100")
    first.wait_consuming()
    own_redis.pause()
    publish_all(messages)
    wait_for(lambda: redis_retries(first) >= 1, 15, "the listener never tried Redis")

    signalled = time.monotonic()
    first.signal(signal.SIGTERM)
    try:
        code: int | None = first.wait(30)
    except Exception:
        code = None
    took = time.monotonic() - signalled
    own_redis.resume()
    second = start_listener(REDIS_URL=own_redis.url)
    second.wait_consuming()
    wait_drained(amqp_config.queue_name, 60)

    assert code == 0, first.log()[-3000:]
    assert took < 10, first.log()[-3000:]
    assert_same_state(Store(own_redis.client(), redis_prefix), reference(messages))


# -- 5. poison ----------------------------------------------------------------------------

def poison_messages(template: Message) -> list[tuple[str, Raw]]:
    """(reason the listener should log, message) for each kind of bad input, routed like `template`."""
    def body_with(change: Callable[[dict], None]) -> bytes:
        body = copy.deepcopy(template.body)
        change(body)
        return orjson.dumps(body)

    def run(body: dict) -> dict:
        return body["status"]["runs"][body["runId"]]

    def raw(body: bytes, content_type: str = "application/json") -> Raw:
        return Raw(template.exchange, template.routing_key, body, content_type)

    return [
        ("not-json", raw(b"\xff\xfe{")),
        ("wrong-content-type", raw(b"hello, this is not a task message", "text/plain")),
        ("too-large", raw(b'{"pad": "' + b"x" * 2_000_000 + b'"}')),
        ("bad-run-id", raw(body_with(lambda b: b.update(runId=len(b["status"]["runs"]) + 3)))),
        ("bad-time", raw(body_with(lambda b: run(b).update(resolved="the 5th of never, 25:99")))),
        ("bad-time", raw(body_with(lambda b: b["status"].update(deadline="2026-13-45T99:99:99Z")))),
        ("bad-identifier", raw(body_with(lambda b: b.update(workerId="bad host!")))),
        ("bad-identifier", raw(body_with(lambda b: b.update(
            workerGroup="dc\n2030-01-01 ERROR forged log line")))),
        ("bad-identifier", raw(body_with(lambda b: b["status"].update(taskId="../../etc/passwd")))),
        ("not-an-object", raw(b'[{"status": {}}, 1, 2]')),
        ("missing-field", raw(b'{"version": 1, "status": "completed"}')),
    ]


@pytest.mark.slow
def test_poison_messages_are_skipped_counted_and_logged_once_while_good_ones_land(
        amqp_config: Config, real_store: Store, provisioner_id: str, start_listener: Any,
        reference: Any) -> None:
    """Bad bytes, wrong type, 2 MB, bad runId, dates, identifiers, arrays: skipped, counted, logged."""
    good = backlog(600, machines=30, end=utcnow(), provisioner_id=provisioner_id)
    template = next(m for m in good if m.exchange.endswith("task-completed"))
    poison = poison_messages(template)
    stream: list[Message | Raw] = list(good)
    rng = random.Random(3)
    for _, message in poison:
        stream.insert(rng.randrange(len(stream)), message)
    listener = start_listener()
    listener.wait_consuming()
    publish_all(stream)
    wait_drained(amqp_config.queue_name, 60)

    assert listener.alive(), listener.log()[-3000:]
    assert int(real_store.listener_status()["malformed"]) == len(poison)
    assert_same_state(real_store, reference(good))
    lines = listener.log_lines()
    skipped = [line for line in lines if "malformed message skipped" in line]
    logged = Counter(re.search(r"skipped: (\S+)", line).group(1) for line in skipped)  # type: ignore[union-attr]
    assert logged == Counter(reason for reason, _ in poison)
    assert all(len(line) < MAX_LOG_LINE for line in lines), max(len(line) for line in lines)
    assert not any(line.startswith("2030-01-01 ERROR forged") for line in lines)
    assert "Traceback" not in listener.log()


# -- 6. duplicates and reordering ---------------------------------------------------------

@pytest.mark.slow
def test_every_message_twice_in_shuffled_order_gives_the_state_of_once_in_order(
        amqp_config: Config, real_store: Store, provisioner_id: str, listener_thread: Any,
        publish: Any, reference: Any) -> None:
    """Each message delivered twice, all shuffled: the same machines and pending tasks as once."""
    messages = backlog(1200, machines=30, end=utcnow(), provisioner_id=provisioner_id)
    doubled = messages + messages
    random.Random(6).shuffle(doubled)
    listener_thread()
    publish(doubled)
    wait_for(lambda: processed(real_store) >= len(doubled), 60,
             "the listener did not process every message")

    expected = reference(messages)
    reference_store = Store(real_store.redis, real_store.prefix + "reference:")
    now = utcnow()
    assert processed(real_store) == len(doubled)
    worker_events = sum(isinstance(e, WorkerEvent) for e in events_of(messages, provisioner_id))
    assert int(real_store.listener_status()["duplicate"]) >= worker_events
    assert_same_state(real_store, expected)
    assert real_store.pending_counts(now) == reference_store.pending_counts(now)
