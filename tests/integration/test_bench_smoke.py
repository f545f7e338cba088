"""The benchmark's CI form completes and reports; its timings are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_service

pytestmark = pytest.mark.slow


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_quick_benchmark_completes_and_writes_its_report(tmp_path: Path) -> None:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    require_service("Redis", "127.0.0.1", 6379)
    report_path = tmp_path / "bench.json"

    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(report_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(report_path.read_text())
    drain, api, latency, scale = (report[part] for part in ("drain", "api", "latency", "scale"))
    assert report["settings"]["repetitions"] == len(drain["repetitions"]) == 2
    for repetition in drain["repetitions"]:
        assert repetition["listener"]["processed"] == drain["messages"] == 5000
        assert repetition["listener"]["queue_left"] == repetition["bare"]["queue_left"] == 0
    for value in (drain["bare_msgs_per_s"], drain["listener_msgs_per_s"], drain["ratio"],
                  drain["listener"]["peak_rss_mb"], api["poll"]["bare_p50_ms"], api["poll"]["ratio"],
                  api["full"]["bare_p50_ms"], api["full"]["ratio"], api["machine"]["p50_ms"],
                  api["memory"]["bytes_per_machine"], api["preload"]["cli_seconds"],
                  latency["p99_ms"], scale["poll"]["p50_ms"], scale["summary"]["p50_ms"],
                  scale["dashboard"]["p50_ms"], api["labels"]["p50_ms"],
                  api["sizes"]["machine_bytes"]["median"], api["sizes"]["label_bytes"]["median"],
                  api["sizes"]["label_memory_usage"]["max"],
                  scale["summary"]["vs_figures"]["ratio"], scale["dashboard"]["vs_figures"]["ratio"],
                  scale["dashboard"]["vs_figures_and_rows"]["ratio"],
                  api["memory"]["bytes_per_machine_written"]):
        assert _positive(value)
    # the fill's runs are labelled: their labels are kept, and /labels answers with some
    assert api["sizes"]["labels"] > 0 and api["labels"]["body_bytes"] > 2
    assert [level["concurrency"] for level in api["machines_list"]] == [1, 4, 16]
    for level in api["machines_list"]:
        assert _positive(level["p50_ms"]) and _positive(level["p99_ms"])
        assert _positive(level["requests_per_s"])
    # every probe published became visible, in each repetition
    assert [rep["probes"] for rep in latency["repetitions"]] == [
        -(-rep["published"] // latency["probe_every"]) for rep in latency["repetitions"]]
    assert set(report["targets"]) == {
        "listener_vs_bare_drain", "listener_peak_rss_mb", "poll_vs_bare", "machines_vs_full_floor",
        "machine_p50_ms", "visible_p99_s", "redis_bytes_per_machine", "scale_poll_p50_s",
        "scale_summary_p50_s", "scale_dashboard_p50_s", "scale_page_first_p50_s",
        "scale_page_middle_p50_s", "preload_100k_seconds", "label_bytes",
        "scale_summary_vs_figures", "scale_dashboard_vs_figures"}
    assert not any(target["at_full_scale"] for target in report["targets"].values())
    assert {"cpu_model", "cores", "python", "redis", "rabbitmq", "date"} <= set(report["machine"])
