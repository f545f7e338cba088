"""Command line of the benchmark: options, the run, the table and the JSON report."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from .harness import ROOT, Cleanup, delete_redis_prefix, raise_on_sigterm

DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
# (value, limit, the limit is a floor) straight from issue 5
TARGETS = {
    "listener_vs_bare_drain": (0.75, True),
    "listener_peak_rss_mb": (150.0, False),
    "machines_p50_vs_bare": (2.0, False),
    "machine_p50_ms": (2.0, False),
    "preload_100k_seconds": (5.0, False),
}
FULL = {"messages": 100_000, "machines": 1000, "api_machines": 10_000, "preload_entries": 100_000,
        "seconds_per_level": 8.0}
QUICK = {"messages": 5000, "machines": 1000, "api_machines": 1000, "preload_entries": 10_000,
         "seconds_per_level": 1.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; --quick changes the defaults of those not given."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the listener's drain of a Pulse backlog against bare kombu, and the "
                    "API under gunicorn against the bare in-process build+encode, on the local "
                    "RabbitMQ and Redis. Prints a table and writes a JSON report. Everything "
                    "the run creates (queues, Redis keys, processes) is removed at the end.")
    parser.add_argument("--messages", type=int, help=f"backlog size (default {FULL['messages']})")
    parser.add_argument("--machines", type=int,
                        help=f"fleet size of the backlog (default {FULL['machines']})")
    parser.add_argument("--api-machines", type=int,
                        help=f"machines in Redis for the API (default {FULL['api_machines']})")
    parser.add_argument("--preload-entries", type=int,
                        help=f"entries preloaded (default {FULL['preload_entries']})")
    parser.add_argument("--seconds-per-level", type=float,
                        help=f"load time per concurrency (default {FULL['seconds_per_level']})")
    parser.add_argument("--concurrency", default="1,4,16",
                        help="comma-separated client concurrencies for GET /machines")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help="where to write the JSON report (default bench/results/latest.json)")
    parser.add_argument("--quick", action="store_true",
                        help="small CI form: 5000 messages, 1000 API machines, 10000 preload "
                             "entries, 1.5 s per concurrency")
    parser.add_argument("--amqp-url",
                        default=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
                        help="local RabbitMQ (env BENCH_AMQP_URL)")
    parser.add_argument("--redis-url",
                        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="local Redis; keys go under a unique prefix (env BENCH_REDIS_URL)")
    parser.add_argument("--listener-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra setting for the listener, e.g. BATCH_SIZE=500 (repeatable; "
                             "default: the production defaults)")
    parser.add_argument("--skip-drain", action="store_true", help="only the API part")
    parser.add_argument("--skip-api", action="store_true", help="only the listener drain")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if any("=" not in item for item in args.listener_env):
        parser.error("--listener-env takes NAME=VALUE")
    args.listener_env = dict(item.split("=", 1) for item in args.listener_env)
    args.concurrency = tuple(int(part) for part in args.concurrency.split(",") if part.strip())
    if args.messages <= 0 or args.api_machines <= 0 or not args.concurrency:
        parser.error("--messages, --api-machines and --concurrency must be positive")
    return args


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """Each target of the issue with the measured value and whether it is met."""
    values: dict[str, float] = {}
    drain, api = report.get("drain"), report.get("api")
    if drain:
        values["listener_vs_bare_drain"] = drain["ratio"]
        values["listener_peak_rss_mb"] = drain["listener"]["peak_rss_mb"]
    if api:
        values["machines_p50_vs_bare"] = api["ratio"]
        values["machine_p50_ms"] = api["machine"]["p50_ms"]
        values["preload_100k_seconds"] = api["preload"]["cli_seconds"]
    full_scale = {
        "listener_vs_bare_drain": bool(drain) and drain["messages"] >= 100_000,
        "listener_peak_rss_mb": bool(drain) and drain["messages"] >= 100_000,
        "machines_p50_vs_bare": bool(api) and api["machines"] >= 10_000,
        "machine_p50_ms": bool(api) and api["machines"] >= 10_000,
        "preload_100k_seconds": bool(api) and api["preload"]["entries"] >= 100_000,
    }
    out = {}
    for name, value in values.items():
        limit, floor = TARGETS[name]
        out[name] = {"value": value, "limit": limit, "kind": ">=" if floor else "<=",
                     "met": value >= limit if floor else value <= limit,
                     "at_full_scale": full_scale[name]}
    return out


def table(report: dict[str, Any]) -> str:
    """The report as a short plain-text table."""
    rows: list[tuple[str, str, str]] = []
    drain, api = report.get("drain"), report.get("api")
    if drain:
        n = f"{drain['messages']:,} msgs"
        rows += [
            ("bare kombu drain", f"{drain['bare']['msgs_per_s']:,.0f} msgs/s",
             f"{n} in {drain['bare']['seconds']:.1f} s, {drain['bare']['cpu_seconds']:.1f} s CPU"),
            ("listener drain", f"{drain['listener']['msgs_per_s']:,.0f} msgs/s",
             f"{n} in {drain['listener']['seconds']:.1f} s, {drain['listener']['cpu_seconds']:.1f} s CPU; "
             f"{drain['listener']['startup_seconds']:.1f} s start-up apart"),
            ("listener / bare", f"{drain['ratio']:.2f}", "target >= 0.75"),
            ("listener peak RSS", f"{drain['listener']['peak_rss_mb']:.0f} MB", "target <= 150 MB"),
        ]
    if api:
        m = f"{api['machines']:,} machines"
        rows.append(("bare HGETALL+list+orjson", f"{api['bare_build_encode_p50_ms']:.1f} ms p50",
                     f"{m}; all fields {api['bare_full_build_encode_p50_ms']:.1f} ms"))
        for level in api["machines_list"]:
            rows.append((f"GET /machines c={level['concurrency']}",
                         f"{level['p50_ms']:.1f} / {level['p99_ms']:.1f} ms",
                         f"p50/p99; {level['requests_per_s']:.1f} req/s, "
                         f"{level['body_bytes'] / 1e6:.1f} MB body"))
        rows += [
            ("/machines p50 / bare", f"{api['ratio']:.2f}",
             f"target <= 2; {api['ratio_to_full']:.2f} x the all-fields floor"),
            ("GET /machines/<id> p50", f"{api['machine']['p50_ms']:.2f} ms",
             f"p99 {api['machine']['p99_ms']:.2f} ms; target <= 2 ms"),
            (f"preload {api['preload']['entries']:,} (CLI)", f"{api['preload']['cli_seconds']:.2f} s",
             f"Store.preload alone {api['preload']['store_seconds']:.2f} s; target <= 5 s"),
        ]
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    lines = [f"{name:<{width}}  {value:>{value_width}}  {note}" for name, value, note in rows]
    lines.append("")
    for name, target in report["targets"].items():
        verdict = "met" if target["met"] else "NOT met"
        scale = "" if target["at_full_scale"] else " (not at full scale)"
        lines.append(f"target {name}: {target['value']} {target['kind']} {target['limit']}: "
                     f"{verdict}{scale}")
    info = report["machine"]
    lines.append(f"on {info['cpu_model']}, {info['cores']} cores, Python {info['python']}, "
                 f"Redis {info['redis']}, RabbitMQ {info['rabbitmq']}, {info['date']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed (targets missed or not), 1 when it failed."""
    from releng_hardware.store import open_redis

    from .api import ApiSetup, run_api
    from .drain import DrainSetup, run_drain
    from .info import machine_info

    args = parse_args(argv)
    raise_on_sigterm()
    run_id = uuid.uuid4().hex[:10]
    prefix = f"bench-{run_id}:"
    cleanup = Cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="rh-bench-"))
    redis = open_redis(args.redis_url, timeout=30)
    # registered first, so it runs last: whatever a step left under the run's prefix goes
    cleanup.add("redis prefix", lambda: delete_redis_prefix(redis, prefix))
    report: dict[str, Any] = {"run_id": run_id, "quick": args.quick}
    started = time.perf_counter()
    try:
        report["machine"] = machine_info(redis, args.amqp_url)
        if not args.skip_drain:
            print(f"listener drain: {args.messages:,} messages, {args.machines:,} machines")
            report["drain"] = run_drain(DrainSetup(
                amqp_url=args.amqp_url, redis_url=args.redis_url, redis_prefix=prefix + "drain:",
                queue_name=f"bench-{run_id}", provisioner_id=f"bench-{run_id}",
                messages=args.messages, machines=args.machines, workdir=workdir,
                listener_env=args.listener_env), cleanup)
        if not args.skip_api:
            print(f"API: {args.api_machines:,} machines")
            report["api"] = run_api(ApiSetup(
                redis_url=args.redis_url, redis_prefix=prefix + "api:",
                machines=args.api_machines, concurrencies=args.concurrency,
                seconds_per_level=args.seconds_per_level, preload_entries=args.preload_entries,
                provisioner_id=f"bench-{run_id}", workdir=workdir), cleanup)
    except KeyboardInterrupt:
        print("bench: interrupted; cleaning up", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return 130
    except Exception as exc:
        print(f"bench: failed: {exc}\n(logs in {workdir})", file=sys.stderr)
        return 1
    finally:
        cleanup.close()
        redis.close()
    shutil.rmtree(workdir, ignore_errors=True)  # kept only after a failure, for its logs
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["targets"] = targets(report)
    print()
    print(table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nreport written to {args.json}")
    return 0
