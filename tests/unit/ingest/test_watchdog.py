"""The watchdog: no progress for its timeout ends the process non-zero, so the platform restarts it."""

from __future__ import annotations

import subprocess
import sys
import threading

from releng_hardware.ingest.watchdog import STUCK_EXIT_CODE, Watchdog
from tests.conftest import ROOT


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_it_fires_once_progress_is_overdue_and_not_before():
    clock = Clock()
    fired: list[float] = []
    watchdog = Watchdog(30, on_stuck=fired.append, monotonic=clock)
    clock.now += 29
    assert not watchdog.check()
    watchdog.progress()
    clock.now += 29
    assert not watchdog.check() and fired == []
    clock.now += 2
    assert watchdog.check()
    assert fired == [31]


def test_its_thread_keeps_quiet_while_progress_comes_and_fires_when_it_stops():
    fired = threading.Event()
    watchdog = Watchdog(0.5, on_stuck=lambda stalled: fired.set())
    thread = watchdog.start(interval=0.02)
    for _ in range(20):  # a second of steady progress
        watchdog.progress()
        assert not fired.wait(0.05)
    assert fired.wait(10), "the watchdog never fired"
    thread.join(5)
    assert not thread.is_alive()


def test_by_default_it_logs_where_the_thread_is_stuck_and_exits_non_zero():
    script = (
        "import logging, sys, threading\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "from releng_hardware.ingest.watchdog import Watchdog\n"
        "watchdog = Watchdog(0.3)\n"
        "watchdog.progress()\n"
        "watchdog.start(interval=0.05)\n"
        "def read_from_a_silent_socket():\n"
        "    threading.Event().wait(60)\n"
        "read_from_a_silent_socket()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == STUCK_EXIT_CODE != 0
    assert "made no progress" in done.stdout
    assert "read_from_a_silent_socket" in done.stdout
