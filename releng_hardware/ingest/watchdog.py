"""A watchdog for the listener: a consume loop stuck in one call becomes a process restart."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from typing import Callable

log = logging.getLogger(__name__)

# EX_SOFTWARE: the platform (Heroku, honcho) restarts a dyno that exits non-zero
STUCK_EXIT_CODE = 70


class Watchdog:
    """Calls `on_stuck` when `progress()` has not been called for `timeout` seconds.

    The watched thread calls progress() at every step of every loop it runs. A thread blocked
    in one call (a read on a socket nobody answers) stops calling it; the watchdog's own
    thread notices, and by default logs where the watched thread is stuck and ends the process.
    """

    def __init__(self, timeout: float, on_stuck: Callable[[float], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._on_stuck = on_stuck or self._exit
        self._monotonic = monotonic
        self._last_progress = monotonic()
        self._watched: int | None = None

    def progress(self) -> None:
        """The calling thread made progress (and is the one watched)."""
        self._last_progress = self._monotonic()
        self._watched = threading.get_ident()

    def stalled_for(self) -> float:
        """Seconds since the last progress."""
        return self._monotonic() - self._last_progress

    def check(self) -> bool:
        """Call on_stuck and return True when progress is overdue."""
        stalled = self.stalled_for()
        if stalled < self.timeout:
            return False
        self._on_stuck(stalled)
        return True

    def start(self, interval: float = 1.0) -> threading.Thread:
        """Check every `interval` seconds in a daemon thread, until the first time it fires."""
        def run() -> None:
            while not self.check():
                time.sleep(interval)
        thread = threading.Thread(target=run, name="watchdog", daemon=True)
        thread.start()
        return thread

    def _exit(self, stalled: float) -> None:
        frame = sys._current_frames().get(self._watched or 0)
        where = "".join(traceback.format_stack(frame)[-6:]) if frame else "(unknown)\n"
        log.error("the consume loop made no progress for %.0fs; exiting for a restart. "
                  "It is stuck in:\n%s", stalled, where.rstrip())
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        # the stuck thread holds the interpreter's way out (sys.exit would wait for it)
        os._exit(STUCK_EXIT_CODE)
