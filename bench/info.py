"""What the figures were measured on, so two reports can be compared fairly."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from .harness import ROOT


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(redis_client: Any, amqp_url: str) -> dict[str, Any]:
    """CPU, cores, memory, Python and library versions, Redis and RabbitMQ versions, date."""
    import kombu
    import orjson
    import redis
    from kombu import Connection

    with Connection(amqp_url, heartbeat=0) as connection:
        connection.connect()
        server = connection.connection.server_properties
        rabbitmq = server.get("version", "unknown")
    if isinstance(rabbitmq, bytes):
        rabbitmq = rabbitmq.decode()
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": redis_client.info("server").get("redis_version", "unknown"),
        "rabbitmq": rabbitmq,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "orjson": orjson.__version__,
        "commit": _git_commit(),
    }
