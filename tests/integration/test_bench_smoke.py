"""The benchmark's CI form completes and reports; its timings are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    drain, api = report["drain"], report["api"]
    assert drain["listener"]["processed"] == drain["messages"] == 5000
    for value in (drain["bare"]["msgs_per_s"], drain["listener"]["msgs_per_s"], drain["ratio"],
                  drain["listener"]["peak_rss_mb"], api["bare_build_encode_p50_ms"], api["ratio"],
                  api["machine"]["p50_ms"], api["preload"]["cli_seconds"]):
        assert _positive(value)
    assert [level["concurrency"] for level in api["machines_list"]] == [1, 4, 16]
    for level in api["machines_list"]:
        assert _positive(level["p50_ms"]) and _positive(level["p99_ms"])
        assert _positive(level["requests_per_s"])
    assert set(report["targets"]) == {"listener_vs_bare_drain", "listener_peak_rss_mb",
                                      "machines_p50_vs_bare", "machine_p50_ms",
                                      "preload_100k_seconds"}
    assert {"cpu_model", "cores", "python", "redis", "rabbitmq", "date"} <= set(report["machine"])
