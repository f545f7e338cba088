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

from .harness import ROOT, Cleanup, delete_redis_prefix, private_redis, raise_on_sigterm

DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
# name: (limit, the limit is a floor), from issues 5 and 12; issue 16 (labelled traffic, peers
# kept per label) set the memory's and the label's; issue 18 the drain's and those at scale
TARGETS = {
    "listener_vs_bare_drain": (0.90, True),
    "listener_peak_rss_mb": (150.0, False),
    "poll_vs_bare": (1.3, False),
    "machines_vs_full_floor": (2.0, False),
    "machine_p50_ms": (2.0, False),
    "visible_p99_s": (1.0, False),
    "redis_bytes_per_machine": (6144.0, False),
    "label_bytes": (2048.0, False),
    "scale_poll_p50_s": (1.0, False),
    "scale_summary_p50_s": (0.25, False),
    "scale_dashboard_p50_s": (0.25, False),
    "scale_summary_vs_figures": (3.0, False),
    "scale_dashboard_vs_figures": (3.0, False),
    "scale_page_first_p50_s": (0.05, False),
    "scale_page_middle_p50_s": (0.05, False),
    "preload_100k_seconds": (5.0, False),
}
# What the scale part measures, each with its target scale_<name>_p50_s.
SCALE_MEASURES = ("poll", "summary", "dashboard", "page_first", "page_middle")
FULL = {"messages": 40_000, "machines": 1000, "api_machines": 10_000, "preload_entries": 100_000,
        "scale_machines": 100_000, "repetitions": 5, "seconds_per_repetition": 2.0,
        "seconds_per_level": 3.0, "latency_seconds": 10.0}
QUICK = {"messages": 5000, "machines": 1000, "api_machines": 1000, "preload_entries": 10_000,
         "scale_machines": 5000, "repetitions": 2, "seconds_per_repetition": 0.5,
         "seconds_per_level": 0.5, "latency_seconds": 2.0}
# what each target is measured at to count as the issue's
FULL_SCALE = {"messages": 40_000, "api_machines": 10_000, "scale_machines": 100_000,
              "preload_entries": 100_000, "repetitions": 5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; --quick changes the defaults of those not given."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure, side by side in one run, the listener's drain of a Pulse backlog "
                    "against bare kombu, the API under gunicorn against bare in-process floors, "
                    "publish-to-visible latency, Redis memory per machine and a whole "
                    "deployment's fleet, on the local RabbitMQ and a Redis of the run's own. "
                    "Prints a table and writes a JSON report. Everything the run creates "
                    "(queues, Redis keys, processes) is removed at the end.")
    parser.add_argument("--messages", type=int, help=f"backlog size (default {FULL['messages']})")
    parser.add_argument("--machines", type=int,
                        help=f"fleet size of the backlog (default {FULL['machines']})")
    parser.add_argument("--api-machines", type=int,
                        help=f"machines with full histories for the API and the memory figure "
                             f"(default {FULL['api_machines']})")
    parser.add_argument("--scale-machines", type=int,
                        help=f"machines of the whole-deployment part (default {FULL['scale_machines']})")
    parser.add_argument("--preload-entries", type=int,
                        help=f"entries preloaded (default {FULL['preload_entries']})")
    parser.add_argument("--repetitions", type=int,
                        help=f"repetitions of each measure; medians are reported "
                             f"(default {FULL['repetitions']})")
    parser.add_argument("--seconds-per-repetition", type=float,
                        help=f"load time of one repetition of an API measure "
                             f"(default {FULL['seconds_per_repetition']})")
    parser.add_argument("--seconds-per-level", type=float,
                        help=f"load time per concurrency (default {FULL['seconds_per_level']})")
    parser.add_argument("--concurrency", default="1,4,16",
                        help="comma-separated client concurrencies for GET /machines")
    parser.add_argument("--latency-rate", type=float, default=500.0,
                        help="messages per second of the publish-to-visible run (default 500)")
    parser.add_argument("--latency-seconds", type=float,
                        help=f"seconds of publishing per repetition (default {FULL['latency_seconds']})")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help="where to write the JSON report (default bench/results/latest.json)")
    parser.add_argument("--quick", action="store_true",
                        help="small CI form: 5000 messages, 1000 API machines, 5000 at scale, "
                             "2 repetitions, short loads")
    parser.add_argument("--amqp-url",
                        default=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
                        help="local RabbitMQ (env BENCH_AMQP_URL)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"),
                        help="Redis to use, keys under a unique prefix (env BENCH_REDIS_URL; "
                             "default: a redis-server of the run's own, or "
                             "redis://127.0.0.1:6379/0 when there is no redis-server binary)")
    parser.add_argument("--listener-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra setting for the drained listener, e.g. BATCH_SIZE=500 "
                             "(repeatable; default: the production defaults)")
    parser.add_argument("--listeners", type=int, default=1,
                        help="listener processes sharing the drained queue (default 1)")
    for part in PARTS:
        parser.add_argument(f"--skip-{part}", action="store_true", help=f"leave out the {part} part")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if any("=" not in item for item in args.listener_env):
        parser.error("--listener-env takes NAME=VALUE")
    args.listener_env = dict(item.split("=", 1) for item in args.listener_env)
    args.concurrency = tuple(int(part) for part in args.concurrency.split(",") if part.strip())
    if min(args.messages, args.api_machines, args.scale_machines, args.repetitions) <= 0 \
            or not args.concurrency:
        parser.error("--messages, --api-machines, --scale-machines, --repetitions and "
                     "--concurrency must be positive")
    return args


PARTS = ("drain", "api", "latency", "scale")


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """Each target of the issues with the measured value and whether it is met."""
    values: dict[str, tuple[float, bool]] = {}  # name -> (value, measured at full scale)
    settings = report["settings"]
    full = {name: settings[name] >= limit for name, limit in FULL_SCALE.items()}
    drain, api, latency, scale = (report.get(part) for part in PARTS)
    if drain:
        # the measure: one listener with the production settings
        at_scale = (full["messages"] and full["repetitions"] and settings["listeners"] == 1
                    and not settings["listener_env"])
        values["listener_vs_bare_drain"] = (drain["ratio"], at_scale)
        values["listener_peak_rss_mb"] = (drain["listener"]["peak_rss_mb"], at_scale)
    if api:
        at_scale = full["api_machines"] and full["repetitions"]
        values["poll_vs_bare"] = (api["poll"]["ratio"], at_scale)
        values["machines_vs_full_floor"] = (api["full"]["ratio"], at_scale)
        values["machine_p50_ms"] = (api["machine"]["p50_ms"], at_scale)
        values["redis_bytes_per_machine"] = (api["memory"]["bytes_per_machine"], full["api_machines"])
        values["label_bytes"] = (api["sizes"]["label_memory_usage"]["max"], full["api_machines"])
        values["preload_100k_seconds"] = (api["preload"]["cli_seconds"], full["preload_entries"])
    if latency:
        values["visible_p99_s"] = (round(latency["p99_ms"] / 1000, 3),
                                   full["repetitions"] and latency["rate"] >= 500)
    if scale:
        for name in SCALE_MEASURES:
            values[f"scale_{name}_p50_s"] = (round(scale[name]["p50_ms"] / 1000, 3),
                                             full["scale_machines"])
        for name in ("summary", "dashboard"):
            if "vs_figures" in scale[name]:
                values[f"scale_{name}_vs_figures"] = (scale[name]["vs_figures"]["ratio"],
                                                      full["scale_machines"])
    out = {}
    for name, (value, at_full_scale) in values.items():
        limit, floor = TARGETS[name]
        out[name] = {"value": value, "limit": limit, "kind": ">=" if floor else "<=",
                     "met": value >= limit if floor else value <= limit,
                     "at_full_scale": bool(at_full_scale)}
    return out


def table(report: dict[str, Any]) -> str:
    """The report as a short plain-text table."""
    rows: list[tuple[str, str, str]] = []
    drain, api, latency, scale = (report.get(part) for part in PARTS)
    reps = f"median of {report['settings']['repetitions']}"
    if drain:
        n = f"{drain['messages']:,} msgs"
        rows += [
            ("bare kombu drain", f"{drain['bare_msgs_per_s']:,.0f} msgs/s", f"{n}; {reps}"),
            ("listener drain", f"{drain['listener_msgs_per_s']:,.0f} msgs/s",
             f"{n}; median run {drain['listener']['seconds']:.1f} s, "
             f"{drain['listener']['cpu_seconds']:.1f} s CPU"),
            ("listener / bare", f"{drain['ratio']:.2f}",
             f"{reps}; target >= {TARGETS['listener_vs_bare_drain'][0]:g}"),
            ("listener peak RSS", f"{drain['listener']['peak_rss_mb']:.0f} MB", "target <= 150 MB"),
        ]
    if api:
        m = f"{api['machines']:,} machines"
        poll, full, sizes = api["poll"], api["full"], api["sizes"]
        rows += [
            ("bare poll floor", f"{poll['bare_p50_ms']:.1f} ms p50",
             f"{m}: HGETALL + 3 fields + orjson"),
            ("GET /machines?fields=3", f"{poll['http_p50_ms']:.1f} ms p50",
             f"{poll['body_bytes'] / 1e6:.1f} MB"),
            ("poll / bare", f"{poll['ratio']:.2f}",
             f"{reps}; target <= 1.3; CPU per call {poll['cpu']['http_cpu_ms']:.1f} / "
             f"{poll['cpu']['bare_cpu_ms']:.1f} ms = {poll['cpu']['ratio']:.2f}"),
            ("bare all-fields floor", f"{full['bare_p50_ms']:.1f} ms p50",
             f"{m}, {api['history_runs_per_machine']} runs each"),
            ("GET /machines", f"{full['http_p50_ms']:.1f} ms p50", f"{full['body_bytes'] / 1e6:.1f} MB"),
            ("/machines / floor", f"{full['ratio']:.2f}",
             f"{reps}; target <= 2; CPU per call {full['cpu']['http_cpu_ms']:.1f} / "
             f"{full['cpu']['bare_cpu_ms']:.1f} ms = {full['cpu']['ratio']:.2f}"),
        ]
        for level in api["machines_list"]:
            rows.append((f"GET /machines c={level['concurrency']}",
                         f"{level['p50_ms']:.1f} / {level['p99_ms']:.1f} ms",
                         f"p50/p99; {level['requests_per_s']:.1f} req/s"))
        rows += [
            ("GET /machines/<id> p50", f"{api['machine']['p50_ms']:.2f} ms",
             f"with recent_tasks; p99 {api['machine']['p99_ms']:.2f} ms; target <= 2 ms"),
            ("Redis memory per machine", f"{api['memory']['bytes_per_machine']:,} B",
             f"INFO memory over {m}, {api['memory']['history_runs_per_machine']} labelled runs "
             f"each, labels and the machine index included "
             f"({api['memory'].get('bytes_per_machine_written', 0):,} B before the index); "
             f"target <= {TARGETS['redis_bytes_per_machine'][0]:.0f} B"),
            ("record + history", f"{sizes['machine_bytes']['median']:,} B",
             f"median value bytes per machine; max {sizes['machine_bytes']['max']:,} B"),
            ("a label in Redis", f"{sizes['label_memory_usage']['max']:,} B",
             f"MEMORY USAGE, the largest of {sizes['labels']:,}; value median "
             f"{sizes['label_bytes']['median']:,} B, max {sizes['label_bytes']['max']:,} B; "
             f"target <= {TARGETS['label_bytes'][0]:.0f} B"),
            ("GET /labels p50", f"{api['labels']['p50_ms']:.2f} ms",
             f"p99 {api['labels']['p99_ms']:.2f} ms; {api['labels']['body_bytes']:,} B"),
            (f"preload {api['preload']['entries']:,} (CLI)", f"{api['preload']['cli_seconds']:.2f} s",
             f"Store.preload alone {api['preload']['store_seconds']:.2f} s; target <= 5 s"),
        ]
    if latency:
        rows.append(("publish -> visible p99", f"{latency['p99_ms'] / 1000:.2f} s",
                     f"at {latency['rate']:.0f} msg/s; p50 {latency['p50_ms']:.0f} ms; {reps}; "
                     "target <= 1 s"))
    if scale:
        for name in SCALE_MEASURES:
            target = TARGETS[f"scale_{name}_p50_s"][0]
            rows.append((f"{scale['machines']:,}: {scale[name]['path'][:60]}",
                         f"{scale[name]['p50_ms']:.0f} ms p50", f"target < {target:g} s"))
            against = scale[name].get("vs_figures")
            if against:
                rows.append((f"{scale['machines']:,}: {scale[name]['path'][:60]} / its figures",
                             f"{against['ratio']:.2f}",
                             f"reading them: {against['bare_p50_ms']} ms p50; target <= 3"))
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    lines = [f"{name:<{width}}  {value:>{value_width}}  {note}" for name, value, note in rows]
    lines.append("")
    for name, target in report["targets"].items():
        verdict = "met" if target["met"] else "NOT met"
        scale_note = "" if target["at_full_scale"] else " (not at full scale)"
        lines.append(f"target {name}: {target['value']} {target['kind']} {target['limit']}: "
                     f"{verdict}{scale_note}")
    info = report["machine"]
    lines.append(f"on {info['cpu_model']}, {info['cores']} cores, Python {info['python']}, "
                 f"Redis {info['redis']}, RabbitMQ {info['rabbitmq']}, {info['date']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed (targets missed or not), 1 when it failed."""
    from releng_hardware.store.machines import open_redis

    from .api import ApiSetup, run_api, run_scale
    from .drain import DrainSetup, run_drain
    from .info import machine_info
    from .latency import LatencySetup, run_latency

    args = parse_args(argv)
    raise_on_sigterm()
    run_id = uuid.uuid4().hex[:10]
    prefix = f"bench-{run_id}:"
    cleanup = Cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="rh-bench-"))
    report: dict[str, Any] = {"run_id": run_id, "quick": args.quick, "settings": {
        name: getattr(args, name)
        for name in (*FULL, "latency_rate", "concurrency", "listeners", "listener_env")}}
    started = time.perf_counter()
    try:
        redis_url = args.redis_url or private_redis(workdir, cleanup) or "redis://127.0.0.1:6379/0"
        report["settings"]["redis"] = "given" if args.redis_url else (
            "shared" if redis_url.endswith(":6379/0") else "private redis-server")
        redis = open_redis(redis_url, timeout=30)
        # registered after the server, so it runs before the server stops
        cleanup.add("redis prefix", lambda: delete_redis_prefix(redis, prefix))
        report["machine"] = machine_info(redis, args.amqp_url)
        if not args.skip_drain:
            print(f"listener drain: {args.messages:,} messages, {args.machines:,} machines, "
                  f"{args.repetitions} times")
            report["drain"] = run_drain(DrainSetup(
                amqp_url=args.amqp_url, redis_url=redis_url, redis_prefix=prefix + "drain:",
                queue_name=f"bench-{run_id}", provisioner_id=f"bench-{run_id}",
                messages=args.messages, machines=args.machines, repetitions=args.repetitions,
                workdir=workdir, listener_env=args.listener_env, listeners=args.listeners),
                cleanup)
        api_setup = ApiSetup(
            redis_url=redis_url, redis_prefix=prefix + "api:", machines=args.api_machines,
            repetitions=args.repetitions, seconds_per_repetition=args.seconds_per_repetition,
            concurrencies=args.concurrency, seconds_per_level=args.seconds_per_level,
            preload_entries=args.preload_entries, scale_machines=args.scale_machines,
            provisioner_id=f"bench-{run_id}", workdir=workdir)
        if not args.skip_api:
            print(f"API: {args.api_machines:,} machines")
            report["api"] = run_api(api_setup, cleanup)
        if not args.skip_latency:
            print(f"publish -> visible: {args.latency_rate:.0f} msg/s for "
                  f"{args.latency_seconds:.0f} s, {args.repetitions} times")
            report["latency"] = run_latency(LatencySetup(
                amqp_url=args.amqp_url, redis_url=redis_url, redis_prefix=prefix + "latency:",
                queue_name=f"bench-{run_id}-latency", provisioner_id=f"bench-{run_id}",
                rate=args.latency_rate, seconds=args.latency_seconds,
                repetitions=args.repetitions, workdir=workdir), cleanup)
        if not args.skip_scale:
            print(f"a whole deployment: {args.scale_machines:,} machines")
            report["scale"] = run_scale(api_setup, cleanup)
    except KeyboardInterrupt:
        print("bench: interrupted; cleaning up", file=sys.stderr)
        cleanup.close()
        shutil.rmtree(workdir, ignore_errors=True)
        return 130
    except Exception as exc:
        print(f"bench: failed: {exc!r}\n(logs in {workdir})", file=sys.stderr)
        cleanup.close()
        return 1
    cleanup.close()
    shutil.rmtree(workdir, ignore_errors=True)  # kept only after a failure, for its logs
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["targets"] = targets(report)
    print()
    print(table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nreport written to {args.json}")
    return 0
