"""Resources the benchmark creates and must remove again: processes, queues, Redis keys."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent


class Cleanup:
    """Undo actions run last-registered-first, each one even when an earlier one fails."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], Any]]] = []

    def add(self, name: str, action: Callable[[], Any]) -> None:
        """Register an action to run at close()."""
        self._actions.append((name, action))

    def close(self) -> None:
        """Run every registered action once, newest first."""
        while self._actions:
            name, action = self._actions.pop()
            try:
                action()
            except Exception as exc:  # keep cleaning: one failure must not leak the rest
                print(f"bench: cleanup of {name} failed: {exc!r}", file=sys.stderr)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so `finally` blocks clean up as for Ctrl-C."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a service process: ours, the venv first on PATH, plus `extra`."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Process:
    """A service subprocess in its own session, so a terminal's Ctrl-C reaches only the bench."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path,
                 cleanup: Cleanup, *, shell: bool = False) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(args if not shell else args[0], env=dict(env), cwd=ROOT,
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      shell=shell)
        cleanup.add(f"process {self.popen.pid}", self.stop)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def status_kb(self, field: str) -> int:
        """A memory figure of /proc/<pid>/status in kB (VmHWM is the peak resident set)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        # fields after the parenthesised command name; utime and stime are the 12th and 13th
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tree_cpu_seconds(self) -> float:
        """CPU time of the process and its children alive now (gunicorn's master and workers)."""
        total = 0.0
        for pid in (self.pid, *_children(self.pid)):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The end of the process' output, for error messages."""
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (the service's clean stop), then SIGKILL to its process group if it hangs."""
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    # the group is the one this process leads: its own workers, nothing else
                    os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait(5)
            return self.popen.returncode
        finally:
            self._log.close()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.01, alive: Callable[[], bool] | None = None) -> Any:
    """Poll until condition() is truthy; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.perf_counter() + timeout
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def delete_redis_prefix(client: Any, prefix: str) -> int:
    """Delete every key under `prefix`; the number deleted."""
    deleted = 0
    batch: list[str] = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    return deleted


def percentile(samples: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1) of the samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    """The median of the values (the mean of the middle two for an even count)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def private_redis(workdir: Path, cleanup: Cleanup) -> str | None:
    """A throwaway redis-server of the run's own (no persistence), its URL; None without one.

    Its INFO memory counts nothing but the run's keys, and no other test's keys slow it down.
    """
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    server = Process([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--protected-mode", "yes"],
                     child_env({}), workdir / "redis-server.log", cleanup)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
    wait_until(answers, 20, "private redis-server answering", interval=0.05, alive=server.alive)
    return f"redis://127.0.0.1:{port}/0"
