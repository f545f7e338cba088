"""Listener drain: a backlog in the listener's real queue, the real listener process, and the
same backlog drained by bare kombu from a twin queue in the same run."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import orjson
from kombu import Connection, Exchange, Queue, binding

from releng_hardware.tools import simulate
from releng_hardware.core.config import Config
from releng_hardware.core.events import bindings
from releng_hardware.ingest.broker import declare_queue
from releng_hardware.store.machines import open_redis
from releng_hardware.core.times import utcnow

from .harness import Cleanup, Process, child_env, delete_redis_prefix, median, wait_until

DUPLICATE_RATE = 0.05
REORDER_WINDOW = 100
BARE_PREFETCH = 500
BARE_ACK_EVERY = 200
FILL_ATTEMPTS = 3


@dataclass(frozen=True)
class DrainSetup:
    """Where the drain runs: broker, Redis, the unique names of this run."""

    amqp_url: str
    redis_url: str
    redis_prefix: str
    queue_name: str
    provisioner_id: str
    messages: int
    machines: int
    repetitions: int
    workdir: Path
    listener_env: Mapping[str, str] = field(default_factory=dict)
    listeners: int = 1


def _queue_depth(url: str, name: str) -> int:
    with Connection(url, heartbeat=0) as connection:
        return connection.default_channel.queue_declare(name, passive=True)[1]


def _fill(setup: DrainSetup, config: Config, bare_name: str, messages: list[Any]) -> None:
    """Both queues declared, emptied, then holding exactly the messages."""
    with Connection(setup.amqp_url, heartbeat=0) as connection:
        channel = connection.channel()
        simulate.declare_exchanges(channel)
        declare_queue(config)(channel).declare()
        _twin_queue(bare_name, setup.provisioner_id)(channel).declare()
        for name in (config.queue_name, bare_name):
            channel.queue_purge(name)
        simulate.publish(connection, messages)

        def depths() -> list[int]:
            return [channel.queue_declare(name, passive=True)[1]
                    for name in (config.queue_name, bare_name)]
        filled = wait_until(lambda: min(depths()) >= setup.messages and depths(), 60,
                            "the broker did not route every message to both queues", interval=0.1)
        if max(filled) != setup.messages:
            raise RuntimeError(f"queues hold {filled} messages, not {setup.messages}")


def _twin_queue(name: str, provisioner_id: str) -> Queue:
    # bound exactly like the listener's queue, so one publish fills both with the same messages
    return Queue(name, durable=True, auto_delete=False, bindings=[
        binding(Exchange(exchange, type="topic", passive=True), routing_key=key)
        for exchange, key in bindings((provisioner_id,))])


def run_drain(setup: DrainSetup, cleanup: Cleanup, log: Any = print) -> dict[str, Any]:
    """Fill both queues, drain one with bare kombu and one with the listener; the figures."""
    config = Config(pulse_url=setup.amqp_url, redis_url=setup.redis_url,
                    redis_key_prefix=setup.redis_prefix, pulse_queue_name=setup.queue_name,
                    provisioner_ids=(setup.provisioner_id,))
    bare_name = config.queue_name + "-bare"
    redis = open_redis(setup.redis_url, timeout=10)
    cleanup.add("drain redis keys", lambda: delete_redis_prefix(redis, setup.redis_prefix))
    for name in (config.queue_name, bare_name):
        cleanup.add(f"queue {name}", lambda name=name: delete_queue(setup.amqp_url, name))

    started = time.perf_counter()
    messages = simulate.backlog(setup.messages, setup.machines, end=utcnow(),
                                duplicate_rate=DUPLICATE_RATE, reorder_window=REORDER_WINDOW,
                                provisioner_id=setup.provisioner_id)
    generate_seconds = time.perf_counter() - started
    kinds: dict[str, int] = {}
    for message in messages:
        kind = message.exchange.rsplit("/", 1)[-1]
        kinds[kind] = kinds.get(kind, 0) + 1
    log(f"  generated {len(messages)} messages in {generate_seconds:.1f}s: {kinds}")
    probe = Connection(setup.amqp_url)
    broker_errors = probe.connection_errors + probe.recoverable_connection_errors
    timeout = max(120.0, setup.messages / 200)
    reps = []
    for number in range(setup.repetitions):
        started = time.perf_counter()
        for attempt in range(1, FILL_ATTEMPTS + 1):
            try:
                _fill(setup, config, bare_name, messages)
                break
            except (RuntimeError, *broker_errors) as exc:
                # a shared broker: another test may drop connections; start the fill over
                if attempt == FILL_ATTEMPTS:
                    raise
                log(f"  filling the queues failed ({exc!r}); again, attempt {attempt + 1}")
        publish_seconds = time.perf_counter() - started
        bare = _bare_drain(setup, bare_name, timeout, cleanup)
        bare["queue_left"] = _queue_depth(setup.amqp_url, bare_name)
        # each repetition starts from an empty store, so each does the same work
        listener = _listener_drain(setup, f"{setup.redis_prefix}r{number}:", redis, timeout,
                                   cleanup)
        listener["queue_left"] = _queue_depth(setup.amqp_url, config.queue_name)
        ratio = round(listener["msgs_per_s"] / bare["msgs_per_s"], 3)
        log(f"  {number + 1}: published {setup.messages} (to 2 queues) in {publish_seconds:.1f}s; "
            f"bare kombu {bare['msgs_per_s']:,.0f} msgs/s, listener {listener['msgs_per_s']:,.0f} "
            f"msgs/s, ratio {ratio}")
        reps.append({"publish_seconds": round(publish_seconds, 3), "bare": bare,
                     "listener": listener, "ratio": ratio})
    middle = sorted(reps, key=lambda rep: rep["ratio"])[len(reps) // 2]
    return {
        "messages": setup.messages,
        "machines": setup.machines,
        "duplicate_rate": DUPLICATE_RATE,
        "reorder_window": REORDER_WINDOW,
        "kinds": kinds,
        "generate_seconds": round(generate_seconds, 3),
        # the repetition with the median ratio, and the medians of each figure
        "bare": middle["bare"],
        "listener": {**middle["listener"],
                     "peak_rss_mb": max(rep["listener"]["peak_rss_mb"] for rep in reps)},
        "ratio": round(median([rep["ratio"] for rep in reps]), 3),
        "bare_msgs_per_s": round(median([rep["bare"]["msgs_per_s"] for rep in reps]), 1),
        "listener_msgs_per_s": round(median([rep["listener"]["msgs_per_s"] for rep in reps]), 1),
        "repetitions": reps,
    }


def _bare_drain(setup: DrainSetup, queue: str, timeout: float, cleanup: Cleanup) -> dict[str, Any]:
    process = Process([sys.executable, "-m", "bench.bare_drain", setup.amqp_url, queue,
                       str(setup.messages), "--prefetch", str(BARE_PREFETCH),
                       "--ack-every", str(BARE_ACK_EVERY), "--timeout", str(timeout)],
                      child_env({}), setup.workdir / "bare_drain.log", cleanup)
    wait_until(lambda: not process.alive(), timeout + 30, "bare kombu drain", interval=0.05)
    if process.popen.returncode != 0:
        raise RuntimeError(f"bare kombu drain failed:\n{process.log_tail()}")
    result = orjson.loads(process.log_path.read_text().strip().splitlines()[-1])
    return {
        "seconds": round(result["seconds"], 3),
        "msgs_per_s": round(result["messages"] / result["seconds"], 1),
        "cpu_seconds": round(result["cpu_seconds"], 3),
        "peak_rss_mb": round(result["peak_rss_kb"] / 1024, 1),
        "prefetch": BARE_PREFETCH,
        "ack_every": BARE_ACK_EVERY,
    }


def _listener_drain(setup: DrainSetup, prefix: str, redis: Any, timeout: float,
                    cleanup: Cleanup) -> dict[str, Any]:
    listener_key = prefix + "listener"
    env = listener_env(setup.amqp_url, setup.redis_url, prefix, setup.queue_name,
                       setup.provisioner_id)
    env.update(setup.listener_env)
    # several listeners share the queue as competing consumers, as several dynos would
    processes = [Process([sys.executable, "listen_to_pulse.py"], env,
                         setup.workdir / f"listener-{number}.log", cleanup)
                 for number in range(setup.listeners)]
    process = processes[0]
    for each in processes:
        wait_until(lambda each=each: "consuming" in each.log_tail(), 60,
                   f"listener connecting\n{each.log_tail()}", interval=0.002, alive=each.alive)
    # the clock starts when the listeners consume, as the bare drain's does: start-up is apart
    consuming = time.perf_counter()
    cpu_at_start = [each.cpu_seconds() for each in processes]
    try:
        wait_until(lambda: int(redis.hget(listener_key, "processed") or 0) >= setup.messages,
                   timeout, "listener drain", interval=0.005,
                   alive=lambda: all(each.alive() for each in processes))
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{process.log_tail()}") from None
    done = time.perf_counter()
    cpu_seconds = sum(each.cpu_seconds() - at for each, at in zip(processes, cpu_at_start, strict=True))
    peak_rss_kb = max(each.status_kb("VmHWM") for each in processes)
    stats = redis.hgetall(listener_key)
    machines_seen = redis.hlen(prefix + "machines")
    exit_code = max((each.stop() or 0) for each in processes)
    seconds = done - consuming
    return {
        "seconds": round(seconds, 3),
        "msgs_per_s": round(setup.messages / seconds, 1),
        "listeners": setup.listeners,
        "startup_seconds": round(consuming - process.started, 3),
        "msgs_per_s_incl_startup": round(setup.messages / (done - process.started), 1),
        # CPU time near the wall time means the listener's own Python work is the limit
        "cpu_seconds": round(cpu_seconds, 3),
        "peak_rss_mb": round(peak_rss_kb / 1024, 1),
        "processed": int(stats.get("processed", 0)),
        "written": int(stats.get("written", 0)),
        "duplicates": int(stats.get("duplicate", 0)),
        "ignored": int(stats.get("ignored", 0)),
        "skipped": int(stats.get("skipped", 0)),
        "malformed": int(stats.get("malformed", 0)),
        "machines_seen": machines_seen,
        "prefetch": int(env.get("PULSE_PREFETCH", Config().prefetch)),
        "batch_size": int(env.get("BATCH_SIZE", Config().batch_size)),
        "settings": dict(setup.listener_env),
        "exit_code": exit_code,
    }


def listener_env(amqp_url: str, redis_url: str, prefix: str, queue_name: str,
                 provisioner_id: str) -> dict[str, str]:
    """The environment of `listen_to_pulse.py` on this broker, Redis prefix and queue, with the
    production defaults for everything else, whatever the caller's shell holds."""
    env = child_env({"PULSE_URL": amqp_url, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix,
                     "PULSE_QUEUE_NAME": queue_name, "PROVISIONER_IDS": provisioner_id,
                     "LOG_LEVEL": "INFO",
                     # nothing here reaches the real Taskcluster; its poll runs beside consuming
                     "TASKCLUSTER_POLL": "0"})
    for name in ("PULSE_PREFETCH", "BATCH_SIZE", "BATCH_MAX_AGE"):
        env.pop(name, None)
    return env


def delete_queue(url: str, name: str) -> None:
    """Delete a queue of the broker."""
    with Connection(url, heartbeat=0) as connection:
        connection.default_channel.queue_delete(name)
