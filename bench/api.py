"""API: 10k machines in Redis, gunicorn started as the Procfile says, and the bare in-process
cost of the same data, measured side by side; also preload of 100k entries."""

from __future__ import annotations

import http.client
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import orjson

from releng_hardware.events import PendingEvent, WorkerEvent
from releng_hardware.simulate import fleet, slugid
from releng_hardware.store import Store, open_redis
from releng_hardware.times import format_lastseen, utcnow

from .harness import (ROOT, Cleanup, Process, child_env, delete_redis_prefix, free_port,
                      percentile, wait_until)

RESOLVED = (("completed", "completed"), ("failed", "failed"), ("exception", "worker-shutdown"))


@dataclass(frozen=True)
class ApiSetup:
    """What the API benchmark runs against and for how long."""

    redis_url: str
    redis_prefix: str
    machines: int
    concurrencies: tuple[int, ...]
    seconds_per_level: float
    preload_entries: int
    provisioner_id: str
    workdir: Path


def procfile_web_command(port: int, procfile: Path = ROOT / "Procfile") -> str:
    """The Procfile's `web:` command with $PORT filled in (the shell expands the rest)."""
    for line in procfile.read_text().splitlines():
        if line.startswith("web:"):
            return re.sub(r"\$(PORT\b|\{PORT\})", str(port), line[len("web:"):].strip())
    raise RuntimeError(f"{procfile} has no web: line")


def fill_machines(store: Store, count: int, provisioner_id: str, now: datetime,
                  seed: int = 7) -> list[str]:
    """`count` machines with a run started and resolved each, some stale, some work waiting."""
    rng = random.Random(seed)
    events: list[WorkerEvent | PendingEvent] = []
    for machine in fleet(count):
        started = now - timedelta(seconds=rng.uniform(60, 2 * 86400))
        resolved = started + timedelta(seconds=rng.uniform(30, 3600))
        task_id, deadline = slugid(rng), started + timedelta(days=1)
        state, reason = rng.choice(RESOLVED)
        for moment, run_state, run_reason in ((started, "running", None), (resolved, state, reason)):
            events.append(WorkerEvent(machine.worker_group, machine.worker_id, provisioner_id,
                                      machine.worker_type, task_id, 0, run_state, run_reason,
                                      min(moment, now), deadline, True))
    for worker_type in sorted({machine.worker_type for machine in fleet(count)})[:2]:
        for _ in range(20):
            events.append(PendingEvent(provisioner_id, worker_type, slugid(rng), 0, now,
                                       now + timedelta(hours=12)))
    for start in range(0, len(events), 1000):
        store.record(events[start:start + 1000], now=now)
    return [f"{machine.worker_group}:{machine.worker_id}" for machine in fleet(count)]


def bare_build_encode(client: Any, machines_key: str) -> bytes:
    """The floor of /machines: HGETALL machines, a list of dicts, orjson."""
    lastseen_by_id = client.hgetall(machines_key)
    return orjson.dumps([
        {"id": machine_id, "machine": machine_id.partition(":")[2],
         "datacenter": machine_id.partition(":")[0], "lastseen": lastseen}
        for machine_id, lastseen in lastseen_by_id.items()])


def bare_full_build_encode(client: Any, machines_key: str, records_key: str) -> bytes:
    """The floor of /machines with every field it serves: both hashes in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(machines_key)
    pipe.hgetall(records_key)
    lastseen_by_id, records = pipe.execute()
    loads, out = orjson.loads, []
    for machine_id, lastseen in lastseen_by_id.items():
        raw = records.get(machine_id)
        out.append({"id": machine_id, "lastseen": lastseen,
                    "details": loads(raw) if raw else None})
    return orjson.dumps(out)


def _time_calls(call: Callable[[], Any], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def load(port: int, paths: Callable[[int], str], concurrency: int, seconds: float,
         max_requests: int = 100_000) -> dict[str, Any]:
    """Keep-alive GETs from `concurrency` threads for `seconds`; latency and throughput."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    body_bytes = [0] * concurrency
    stop_at = time.perf_counter() + seconds
    budget = max(1, max_requests // concurrency)

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for number in range(budget):
                if number and time.perf_counter() >= stop_at:
                    break
                started = time.perf_counter()
                conn.request("GET", paths(number * concurrency + index))
                response = conn.getresponse()
                body = response.read()
                latencies[index].append(time.perf_counter() - started)
                body_bytes[index] = len(body)
                if response.status != 200:
                    errors.append(f"{response.status} {body[:200]!r}")
                    break
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(index,), daemon=True)
               for index in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"HTTP errors at concurrency {concurrency}: {errors[:3]}")
    samples = [latency for per_thread in latencies for latency in per_thread]
    return {
        "concurrency": concurrency,
        "requests": len(samples),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(samples) / elapsed, 1),
        "p50_ms": round(percentile(samples, 0.50) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
        "body_bytes": max(body_bytes),
    }


def run_api(setup: ApiSetup, cleanup: Cleanup, log: Any = print) -> dict[str, Any]:
    """Fill Redis, start gunicorn from the Procfile, measure it and the bare floor."""
    client = open_redis(setup.redis_url, timeout=30)
    cleanup.add("api redis keys", lambda: delete_redis_prefix(client, setup.redis_prefix))
    store = Store(client, setup.redis_prefix)
    started = time.perf_counter()
    ids = fill_machines(store, setup.machines, setup.provisioner_id, utcnow())
    log(f"  {client.hlen(store.machines_key)} machines written in {time.perf_counter() - started:.1f}s")

    port = free_port()
    command = procfile_web_command(port)
    env = child_env({"REDIS_URL": setup.redis_url, "REDIS_KEY_PREFIX": setup.redis_prefix,
                     "PORT": str(port), "LOG_LEVEL": "INFO"})
    # exec: the shell expands ${WEB_CONCURRENCY:-2} as Heroku's would, then becomes gunicorn
    server = Process(["exec " + command], env, setup.workdir / "gunicorn.log", cleanup, shell=True)
    wait_until(lambda: _answers(port), 60, "gunicorn answering", interval=0.1, alive=server.alive)
    for _ in range(4):  # each worker's first request pays for imports and connections
        load(port, lambda n: "/machines", 2, 0.0, max_requests=2)

    machines_key, records_key = store.machines_key, store.records_key
    bare_rounds = 15 if setup.machines >= 5000 else 40
    bare = _time_calls(lambda: bare_build_encode(client, machines_key), bare_rounds)
    bare_full = _time_calls(lambda: bare_full_build_encode(client, machines_key, records_key),
                            bare_rounds)
    levels = []
    for concurrency in setup.concurrencies:
        levels.append(load(port, lambda n: "/machines", concurrency, setup.seconds_per_level))
        log(f"  GET /machines c={concurrency}: p50 {levels[-1]['p50_ms']} ms, "
            f"p99 {levels[-1]['p99_ms']} ms, {levels[-1]['requests_per_s']} req/s")
    # the floor is sampled before and after the HTTP runs, so both see the same machine weather
    bare += _time_calls(lambda: bare_build_encode(client, machines_key), bare_rounds)
    bare_full += _time_calls(lambda: bare_full_build_encode(client, machines_key, records_key),
                             bare_rounds)
    rng = random.Random(3)
    one = load(port, lambda n: f"/machines/{rng.choice(ids)}", 1, setup.seconds_per_level,
               max_requests=5000)
    log(f"  GET /machines/<id>: p50 {one['p50_ms']} ms")
    server.stop()

    bare_p50 = percentile(bare, 0.5) * 1000
    bare_full_p50 = percentile(bare_full, 0.5) * 1000
    single = next((level for level in levels if level["concurrency"] == 1), levels[0])
    return {
        "machines": setup.machines,
        "command": command,
        "machines_list": levels,
        "bare_build_encode_p50_ms": round(bare_p50, 2),
        "bare_build_encode_bytes": len(bare_build_encode(client, machines_key)),
        "bare_full_build_encode_p50_ms": round(bare_full_p50, 2),
        "ratio": round(single["p50_ms"] / bare_p50, 2),
        "ratio_to_full": round(single["p50_ms"] / bare_full_p50, 2),
        "machine": one,
        "preload": run_preload(setup, client, cleanup),
    }


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/__lbheartbeat__")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def preload_input(count: int, now: datetime, seed: int = 11) -> bytes:
    """`count` entries in the /machines format, as `preload_redis.py` reads them."""
    rng = random.Random(seed)
    return orjson.dumps([
        {"machine": f"bench-host-{number:06d}", "datacenter": ("mdc1", "mdc2", "mtv2")[number % 3],
         "lastseen": format_lastseen(now - timedelta(seconds=rng.uniform(0, 30 * 86400)))}
        for number in range(count)])


def run_preload(setup: ApiSetup, client: Any, cleanup: Cleanup) -> dict[str, Any]:
    """Seconds to preload the entries: `preload_redis.py` from stdin, and Store.preload alone."""
    from releng_hardware.preload import parse_entries

    now = utcnow()
    raw = preload_input(setup.preload_entries, now)
    prefix = setup.redis_prefix + "preload-cli:"
    env = child_env({"REDIS_URL": setup.redis_url, "REDIS_KEY_PREFIX": prefix})
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "preload_redis.py"], input=raw, env=env, cwd=ROOT,
                          capture_output=True, timeout=300)
    cli_seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"preload_redis.py failed: {done.stderr.decode()[-500:]}")
    cli_written = client.hlen(prefix + "machines")

    store = Store(client, setup.redis_prefix + "preload-store:")
    started = time.perf_counter()
    entries = parse_entries(raw, now)
    parse_seconds = time.perf_counter() - started
    started = time.perf_counter()
    written, kept = store.preload(entries)
    store_seconds = time.perf_counter() - started
    return {
        "entries": setup.preload_entries,
        "input_bytes": len(raw),
        "cli_seconds": round(cli_seconds, 3),
        "cli_written": cli_written,
        "parse_seconds": round(parse_seconds, 3),
        "store_seconds": round(store_seconds, 3),
        "store_written": written,
    }
