"""Publish -> visible: messages published at a steady rate to the listener's queue, and how long
each probe takes to appear in `GET /machines/<id>` under gunicorn."""

from __future__ import annotations

import copy
import http.client
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kombu import Connection, Producer

from releng_hardware.tools import simulate
from releng_hardware.core.config import Config
from releng_hardware.ingest.listener import declare_queue
from releng_hardware.tools.simulate import Message, slugid
from releng_hardware.store.machines import open_redis
from releng_hardware.core.times import utcnow

from .api import start_web
from .drain import delete_queue, listener_env
from .harness import Cleanup, Process, delete_redis_prefix, median, percentile, wait_until

# One message in this many is a probe: a task-running for a machine never seen before.
PROBE_EVERY = 25
PROBE_DATACENTER = "probe"


@dataclass(frozen=True)
class LatencySetup:
    """Where the latency run goes, at what rate and for how long."""

    amqp_url: str
    redis_url: str
    redis_prefix: str
    queue_name: str
    provisioner_id: str
    rate: float
    seconds: float
    repetitions: int
    workdir: Path


def probe(template: Message, hostname: str, rng: random.Random) -> Message:
    """A task-running message like `template`, for a new task on machine probe:<hostname>."""
    body = copy.deepcopy(template.body)
    task_id = slugid(rng)
    body["workerGroup"], body["workerId"] = PROBE_DATACENTER, hostname
    body["status"]["taskId"] = task_id
    run = body["status"]["runs"][body["runId"]]
    run["workerGroup"], run["workerId"] = PROBE_DATACENTER, hostname
    parts = template.routing_key.split(".")
    parts[1], parts[3], parts[4] = task_id, PROBE_DATACENTER, hostname
    return Message(template.exchange, ".".join(parts), body)


def run_latency(setup: LatencySetup, cleanup: Cleanup, log: Any = print) -> dict[str, Any]:
    """A listener and gunicorn on one prefix; each repetition publishes at `rate` for `seconds`."""
    config = Config(pulse_url=setup.amqp_url, redis_url=setup.redis_url,
                    redis_key_prefix=setup.redis_prefix, pulse_queue_name=setup.queue_name,
                    provisioner_ids=(setup.provisioner_id,))
    redis = open_redis(setup.redis_url, timeout=10)
    cleanup.add("latency redis keys", lambda: delete_redis_prefix(redis, setup.redis_prefix))
    cleanup.add(f"queue {config.queue_name}", lambda: delete_queue(setup.amqp_url, config.queue_name))
    per_rep = int(setup.rate * setup.seconds)
    background = simulate.backlog(per_rep * setup.repetitions, 1000, end=utcnow(),
                                  provisioner_id=setup.provisioner_id)
    template = next(message for message in background if message.exchange.endswith("task-running"))
    with Connection(setup.amqp_url, heartbeat=0) as connection:
        simulate.declare_exchanges(connection.default_channel)
        declare_queue(config)(connection.default_channel).declare()

    env = listener_env(setup.amqp_url, setup.redis_url, setup.redis_prefix, setup.queue_name,
                       setup.provisioner_id)
    listener = Process([sys.executable, "listen_to_pulse.py"], env,
                       setup.workdir / "latency-listener.log", cleanup)
    wait_until(lambda: redis.hget(setup.redis_prefix + "listener", "last_connected_at"), 60,
               "latency listener connecting", interval=0.01, alive=listener.alive)
    port, web, _ = start_web(setup.redis_url, setup.redis_prefix, setup.workdir, cleanup,
                             "gunicorn-latency")
    rng = random.Random(5)
    reps = []
    for rep in range(setup.repetitions):
        messages = background[rep * per_rep:(rep + 1) * per_rep]
        reps.append(_one_run(setup, port, messages, template, rep, rng))
        log(f"  publish -> visible at {setup.rate:.0f} msg/s: p50 {reps[-1]['p50_ms']} ms, "
            f"p99 {reps[-1]['p99_ms']} ms ({reps[-1]['probes']} probes)")
    web.stop()
    listener.stop()
    return {
        "rate": setup.rate,
        "seconds_per_repetition": setup.seconds,
        "probe_every": PROBE_EVERY,
        "p50_ms": round(median([rep["p50_ms"] for rep in reps]), 1),
        "p99_ms": round(median([rep["p99_ms"] for rep in reps]), 1),
        "max_ms": round(max(rep["max_ms"] for rep in reps), 1),
        "repetitions": reps,
    }


def _one_run(setup: LatencySetup, port: int, messages: list[Message], template: Message,
             rep: int, rng: random.Random) -> dict[str, Any]:
    outstanding: dict[str, float] = {}  # machine id -> when its probe was published
    latencies: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def poll() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not (done.is_set() and not outstanding):
            with lock:
                waiting = list(outstanding)
            if not waiting:
                time.sleep(0.001)
                continue
            for machine_id in waiting:
                conn.request("GET", f"/machines/{machine_id}")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    seen_at = time.perf_counter()
                    with lock:
                        latencies.append(seen_at - outstanding.pop(machine_id))
        conn.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    published = 0
    with Connection(setup.amqp_url, heartbeat=0) as connection:
        producer = Producer(connection.default_channel)
        started = time.perf_counter()
        for number, message in enumerate(messages):
            if number % PROBE_EVERY == 0:
                hostname = f"p{rep}-{number}"
                message = probe(template, hostname, rng)
            wait = started + number / setup.rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent_at = time.perf_counter()
            producer.publish(message.encoded(), exchange=message.exchange,
                             routing_key=message.routing_key, content_type="application/json",
                             content_encoding="utf-8", delivery_mode=2)
            if number % PROBE_EVERY == 0:
                with lock:
                    outstanding[f"{PROBE_DATACENTER}:{hostname}"] = sent_at
            published += 1
        publish_seconds = time.perf_counter() - started
    done.set()
    poller.join(60)
    if outstanding:
        raise RuntimeError(f"{len(outstanding)} probes never became visible")
    return {
        "published": published,
        "achieved_rate": round(published / publish_seconds, 1),
        "probes": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }
