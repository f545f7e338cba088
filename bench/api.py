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

from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.views.fleet import POLL_FIELDS
from releng_hardware.core.params import encode_cursor
from releng_hardware.tools.simulate import fleet, slugid
from releng_hardware.store.machines import Store, open_redis
from releng_hardware.core.times import format_lastseen, utcnow

from .harness import (ROOT, Cleanup, Process, child_env, delete_redis_prefix, free_port, median,
                      percentile, wait_until)

# A page of the paged /machines as a big fleet's client would ask for it.
PAGE_LIMIT = 500
RESOLVED = (("completed", "completed"), ("failed", "failed"), ("exception", "worker-shutdown"))
# The jobs each worker type runs (task labels, the same on every push), so every run has peers
# on other machines. Named like Gecko's, 70 to 75 characters.
LABELS_PER_WORKER_TYPE = 200


def bench_labels(worker_type: str) -> list[str]:
    """The task labels the benchmark's runs on `worker_type` carry."""
    return [f"test-{worker_type}-shippable-qr/opt-mochitest-browser-chrome-e10s-{number}"
            for number in range(1, LABELS_PER_WORKER_TYPE + 1)]


@dataclass(frozen=True)
class ApiSetup:
    """What the API benchmark runs against and for how long."""

    redis_url: str
    redis_prefix: str
    machines: int
    repetitions: int
    seconds_per_repetition: float
    concurrencies: tuple[int, ...]
    seconds_per_level: float
    preload_entries: int
    scale_machines: int
    provisioner_id: str
    workdir: Path


def procfile_web_command(port: int, procfile: Path = ROOT / "Procfile") -> str:
    """The Procfile's `web:` command with $PORT filled in (the shell expands the rest)."""
    for line in procfile.read_text().splitlines():
        if line.startswith("web:"):
            return re.sub(r"\$(PORT\b|\{PORT\})", str(port), line[len("web:"):].strip())
    raise RuntimeError(f"{procfile} has no web: line")


def start_web(redis_url: str, prefix: str, workdir: Path, cleanup: Cleanup,
              name: str = "gunicorn") -> tuple[int, Process, str]:
    """gunicorn as the Procfile runs it, on a free port, reading `prefix`: (port, process, command)."""
    port = free_port()
    command = procfile_web_command(port)
    env = child_env({"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix, "PORT": str(port),
                     "LOG_LEVEL": "INFO"})
    # exec: the shell expands ${WEB_CONCURRENCY:-2} as Heroku's would, then becomes gunicorn
    server = Process(["exec " + command], env, workdir / f"{name}.log", cleanup, shell=True)
    wait_until(lambda: _answers(port), 60, "gunicorn answering", interval=0.1, alive=server.alive)
    return port, server, command


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
    events += _pending(fleet(count), provisioner_id, now, rng)
    _record(store, events, now)
    return [f"{machine.worker_group}:{machine.worker_id}" for machine in fleet(count)]


def fill_machines_with_history(store: Store, count: int, provisioner_id: str, now: datetime,
                               seed: int = 7) -> list[str]:
    """`count` machines, each with a full history: as many ended runs as the store keeps
    (86 % completed, 9 % failed, 5 % exception), the newest of some still running; every run
    has a label of its worker type's (`bench_labels`), so the peers are kept and read."""
    rng = random.Random(seed)
    events: list[WorkerEvent | PendingEvent] = []
    labels = {worker_type: bench_labels(worker_type)
              for worker_type in sorted({machine.worker_type for machine in fleet(count)})}
    for machine in fleet(count):
        moment = now - timedelta(seconds=rng.uniform(60, 2 * 86400))
        for run in range(store.history_size):
            started = moment - timedelta(seconds=rng.uniform(300, 3600))
            state, reason = rng.choices(RESOLVED, weights=(86, 9, 5))[0]
            running = run == 0 and rng.random() < 0.2
            events.append(WorkerEvent(
                machine.worker_group, machine.worker_id, provisioner_id, machine.worker_type,
                slugid(rng), 0, "running" if running else state, None if running else reason,
                started if running else moment, moment + timedelta(days=1), True,
                started=started, label=rng.choice(labels[machine.worker_type])))
            moment = started - timedelta(seconds=rng.uniform(5, 120))
    events += _pending(fleet(count), provisioner_id, now, rng)
    _record(store, events, now)
    return [f"{machine.worker_group}:{machine.worker_id}" for machine in fleet(count)]


def stored_sizes(client: Any, store: Store, ids: list[str]) -> dict[str, Any]:
    """What the fill left in Redis, value by value: each machine's record and history (the
    hashes' values, STRLEN-like) and each label's string (its length and MEMORY USAGE)."""
    pipe = client.pipeline(transaction=False)
    for machine_id in ids:
        pipe.hstrlen(store.keys.machine_records, machine_id)
        pipe.hstrlen(store.keys.machine_history, machine_id)
    lengths = pipe.execute()
    machine_bytes = [record + history for record, history in zip(lengths[::2], lengths[1::2],
                                                                  strict=True)]
    label_keys = list(client.scan_iter(match=store.keys.label("*"), count=1000))
    pipe = client.pipeline(transaction=False)
    for key in label_keys:
        pipe.strlen(key)
        pipe.memory_usage(key, samples=0)
    label_sizes = pipe.execute()
    return {"machine_bytes": _spread(machine_bytes), "labels": len(label_keys),
            "label_bytes": _spread(label_sizes[::2]),
            "label_memory_usage": _spread(label_sizes[1::2])}


def _spread(values: list[int]) -> dict[str, float]:
    return {"median": round(median(values)) if values else 0, "max": max(values, default=0)}


def _pending(machines: list[Any], provisioner_id: str, now: datetime,
             rng: random.Random) -> list[PendingEvent]:
    return [PendingEvent(provisioner_id, worker_type, slugid(rng), 0, now, now + timedelta(hours=12))
            for worker_type in sorted({machine.worker_type for machine in machines})[:2]
            for _ in range(20)]


def _record(store: Store, events: list[Any], now: datetime, batch: int = 1000) -> None:
    for start in range(0, len(events), batch):
        store.record(events[start:start + batch], now=now)


def bare_poll_build_encode(client: Any, machines_key: str) -> bytes:
    """The floor of the three-field poll: HGETALL machines, a list of dicts, orjson."""
    lastseen_by_id = client.hgetall(machines_key)
    return orjson.dumps([
        {"machine": machine_id.partition(":")[2], "datacenter": machine_id.partition(":")[0],
         "lastseen": lastseen}
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


def bare_group_figures(client: Any, prefix: str) -> list[Any]:
    """The floor of /summary and the dashboard at scale: read from Redis the per-group figures
    they print, without the service: each group's machines, stale, seen within the hour and
    hung (the machine index's sorted sets), the judged counts, and the tasks waiting per queue."""
    cutoff = round(time.time() * 1_000_000)
    groups = sorted(client.smembers(prefix + "index:groups"))
    queues = sorted(client.smembers(prefix + "pending_queues"))
    pipe = client.pipeline(transaction=False)
    for group in groups:
        seen = prefix + "index:seen:" + group
        pipe.zcard(seen)
        pipe.zcount(seen, "-inf", cutoff - 6 * 3600 * 1_000_000)
        pipe.zcount(seen, cutoff - 3600 * 1_000_000, "+inf")
        pipe.zcount(prefix + "index:running:" + group, "-inf", f"({cutoff - 3 * 3600 * 1_000_000}")
    pipe.hgetall(prefix + "index:counts")
    for queue in queues:
        pipe.zcount(prefix + "pending:" + queue, f"({time.time()}", "+inf")
    return pipe.execute()


def bare_page_figures(client: Any, prefix: str, rows: int = 200) -> list[Any]:
    """The floor of the dashboard's first page with its rows: the per-group figures, and the
    first `rows` machines of the machine order with their lastseen and records, decoded."""
    figures = bare_group_figures(client, prefix)
    members = client.zrange(prefix + "machine_order", 0, rows - 1)
    ids = [member.split("\0")[2] for member in members]
    pipe = client.pipeline(transaction=False)
    pipe.hmget(prefix + "machines", ids)
    pipe.hmget(prefix + "machine_records", ids)
    lastseen, records = pipe.execute()
    return [figures, lastseen, [orjson.loads(raw) for raw in records if raw]]


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
    """Fill Redis with machines with full histories, start gunicorn from the Procfile, and
    measure it side by side with the bare floors, repetition by repetition."""
    client = open_redis(setup.redis_url, timeout=30)
    cleanup.add("api redis keys", lambda: delete_redis_prefix(client, setup.redis_prefix))
    store = Store(client, setup.redis_prefix)
    memory_before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    ids = fill_machines_with_history(store, setup.machines, setup.provisioner_id, utcnow())
    fill_seconds = time.perf_counter() - started
    memory_after = int(client.info("memory")["used_memory"])
    log(f"  {client.hlen(store.keys.machines)} machines with {store.history_size} runs each "
        f"written in {fill_seconds:.1f}s")

    sizes = stored_sizes(client, store, ids)
    log(f"  a machine's record + history: median {sizes['machine_bytes']['median']} B; "
        f"{sizes['labels']} labels, median {sizes['label_bytes']['median']} B value, "
        f"{sizes['label_memory_usage']['median']} B in Redis")

    port, server, command = start_web(setup.redis_url, setup.redis_prefix, setup.workdir, cleanup)
    for _ in range(4):  # each worker's first request pays for imports and connections
        load(port, lambda n: "/machines", 2, 0.0, max_requests=2)
    # the first reads judged every machine into the machine index, with its views: counted too
    memory_indexed = int(client.info("memory")["used_memory"])

    machines_key, records_key = store.keys.machines, store.keys.machine_records
    poll_path = f"/machines?fields={','.join(POLL_FIELDS)}"
    poll_floor = lambda: bare_poll_build_encode(client, machines_key)  # noqa: E731
    poll = _against_floor(port, poll_path, poll_floor, setup)
    poll["cpu"] = _cpu_against_floor(port, poll_path, poll_floor, server, client, 50)
    log(f"  GET {poll_path}: p50 {poll['http_p50_ms']} ms, {poll['ratio']} x the bare floor; "
        f"CPU {poll['cpu']['ratio']} x")
    full_floor = lambda: bare_full_build_encode(client, machines_key, records_key)  # noqa: E731
    full = _against_floor(port, "/machines", full_floor, setup)
    full["cpu"] = _cpu_against_floor(port, "/machines", full_floor, server, client, 10)
    log(f"  GET /machines: p50 {full['http_p50_ms']} ms, {full['ratio']} x the all-fields floor; "
        f"CPU {full['cpu']['ratio']} x")
    levels = []
    for concurrency in setup.concurrencies:
        levels.append(load(port, lambda n: "/machines", concurrency, setup.seconds_per_level))
        log(f"  GET /machines c={concurrency}: p50 {levels[-1]['p50_ms']} ms, "
            f"p99 {levels[-1]['p99_ms']} ms, {levels[-1]['requests_per_s']} req/s")
    rng = random.Random(3)
    one_reps = [load(port, lambda n: f"/machines/{rng.choice(ids)}", 1,
                     setup.seconds_per_repetition, max_requests=5000)
                for _ in range(setup.repetitions)]
    one = {"p50_ms": round(median([rep["p50_ms"] for rep in one_reps]), 2),
           "p99_ms": round(median([rep["p99_ms"] for rep in one_reps]), 2),
           "body_bytes": one_reps[0]["body_bytes"], "repetitions": one_reps}
    log(f"  GET /machines/<id>: p50 {one['p50_ms']} ms")
    labels = load(port, lambda n: "/labels", 1, setup.seconds_per_repetition, max_requests=2000)
    log(f"  GET /labels: p50 {labels['p50_ms']} ms, {labels['body_bytes']} B")
    server.stop()
    return {
        "machines": setup.machines,
        "history_runs_per_machine": store.history_size,
        "fill_seconds": round(fill_seconds, 1),
        "command": command,
        "poll": poll,
        "full": full,
        "machines_list": levels,
        "machine": one,
        "labels": labels,
        "sizes": sizes,
        "memory": {
            "machines": setup.machines,
            "history_runs_per_machine": store.history_size,
            "used_memory_before": memory_before,
            "used_memory_after": memory_after,
            "used_memory_indexed": memory_indexed,
            "bytes_per_machine_written": round((memory_after - memory_before) / setup.machines),
            "bytes_per_machine": round((memory_indexed - memory_before) / setup.machines),
        },
        "preload": run_preload(setup, client, cleanup),
    }


def _cpu_against_floor(port: int, path: str, bare: Callable[[], Any], server: Process,
                       client: Any, calls: int) -> dict[str, Any]:
    """CPU seconds per call, which a busy machine bends much less than wall time: gunicorn's
    processes per request against this thread per bare call, Redis' own CPU added to both."""
    def redis_cpu() -> float:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        redis_before, web_before = redis_cpu(), server.tree_cpu_seconds()
        for _ in range(calls):
            conn.request("GET", path)
            conn.getresponse().read()
        web = server.tree_cpu_seconds() - web_before + redis_cpu() - redis_before
    finally:
        conn.close()
    redis_before, thread_before = redis_cpu(), time.thread_time()
    for _ in range(calls):
        bare()
    floor = time.thread_time() - thread_before + redis_cpu() - redis_before
    return {"calls": calls, "http_cpu_ms": round(web / calls * 1000, 2),
            "bare_cpu_ms": round(floor / calls * 1000, 2), "ratio": round(web / floor, 3)}


def _against_floor(port: int, path: str, bare: Callable[[], Any], setup: ApiSetup) -> dict[str, Any]:
    """p50 of GET path at concurrency 1 against the bare floor's, in each repetition.

    The two alternate call by call, so that both see the same weather on a shared machine.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    reps = []
    try:
        for _ in range(setup.repetitions):
            floor: list[float] = []
            served: list[float] = []
            body_bytes = 0
            stop_at = time.perf_counter() + setup.seconds_per_repetition
            while len(served) < 5 or time.perf_counter() < stop_at:
                floor += _time_calls(bare, 1)
                started = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                served.append(time.perf_counter() - started)
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
                body_bytes = len(body)
            floor_p50, served_p50 = percentile(floor, 0.5) * 1000, percentile(served, 0.5) * 1000
            reps.append({"http_p50_ms": round(served_p50, 2),
                         "http_p99_ms": round(percentile(served, 0.99) * 1000, 2),
                         "bare_p50_ms": round(floor_p50, 2),
                         "ratio": round(served_p50 / floor_p50, 3),
                         "requests": len(served), "body_bytes": body_bytes})
    finally:
        conn.close()
    return {
        "path": path,
        "http_p50_ms": round(median([rep["http_p50_ms"] for rep in reps]), 2),
        "bare_p50_ms": round(median([rep["bare_p50_ms"] for rep in reps]), 2),
        "ratio": round(median([rep["ratio"] for rep in reps]), 3),
        "body_bytes": reps[0]["body_bytes"],
        "bare_body_bytes": len(bare()),
        "repetitions": reps,
    }


def run_scale(setup: ApiSetup, cleanup: Cleanup, log: Any = print) -> dict[str, Any]:
    """A whole deployment's fleet: the poll, /summary, the dashboard's first page and a first
    and a middle page of the paged /machines (every field), p50."""
    client = open_redis(setup.redis_url, timeout=60)
    prefix = setup.redis_prefix + "scale:"
    cleanup.add("scale redis keys", lambda: delete_redis_prefix(client, prefix))
    store = Store(client, prefix)
    started = time.perf_counter()
    fill_machines(store, setup.scale_machines, setup.provisioner_id, utcnow())
    fill_seconds = time.perf_counter() - started
    log(f"  {client.hlen(store.keys.machines)} machines written in {fill_seconds:.1f}s")
    port, server, _ = start_web(setup.redis_url, prefix, setup.workdir, cleanup, "gunicorn-scale")
    out: dict[str, Any] = {"machines": setup.scale_machines, "fill_seconds": round(fill_seconds, 1)}
    # the place halfway through the machine order, as a client walking the pages gets there
    middle, = client.zrange(store.keys.machine_order, setup.scale_machines // 2,
                            setup.scale_machines // 2)
    for name, path in (("poll", f"/machines?fields={','.join(POLL_FIELDS)}"),
                       ("summary", "/summary"), ("dashboard", "/"),
                       ("page_first", f"/machines?limit={PAGE_LIMIT}"),
                       ("page_middle", f"/machines?limit={PAGE_LIMIT}&cursor={encode_cursor(middle)}")):
        load(port, lambda n, path=path: path, 1, 0.0, max_requests=2)  # warm both workers
        load(port, lambda n, path=path: path, 2, 0.0, max_requests=2)
        samples = [load(port, lambda n, path=path: path, 1, 0.0, max_requests=1)["p50_ms"]
                   for _ in range(max(5, setup.repetitions))]
        out[name] = {"path": path, "p50_ms": round(median(samples), 1),
                     "max_ms": round(max(samples), 1), "samples_ms": samples}
        log(f"  {path}: p50 {out[name]['p50_ms']} ms")
    # each against the floor of reading the figures it prints, side by side
    figures_floor = lambda: bare_group_figures(client, prefix)  # noqa: E731
    for name, path in (("summary", "/summary"), ("dashboard", "/")):
        against = _against_floor(port, path, figures_floor, setup)
        out[name]["vs_figures"] = {key: against[key] for key in (
            "http_p50_ms", "bare_p50_ms", "ratio")}
        log(f"  {path}: {against['ratio']} x reading its per-group figures "
            f"({against['bare_p50_ms']} ms)")
    # the dashboard prints its first 200 rows too: against reading those as well
    against = _against_floor(port, "/", lambda: bare_page_figures(client, prefix), setup)
    out["dashboard"]["vs_figures_and_rows"] = {key: against[key] for key in (
        "http_p50_ms", "bare_p50_ms", "ratio")}
    log(f"  /: {against['ratio']} x reading its figures and its 200 rows "
        f"({against['bare_p50_ms']} ms)")
    server.stop()
    return out


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
    from releng_hardware.tools.preload import parse_entries

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
