"""The transport limit: drain a queue with bare kombu and a no-op callback, in its own process.

`python -m bench.bare_drain URL QUEUE COUNT` prints one JSON line with the timing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from kombu import Connection, Consumer, Queue


def drain(url: str, queue_name: str, count: int, *, prefetch: int = 500, ack_every: int = 200,
          timeout: float = 600.0) -> dict[str, Any]:
    """Consume `count` messages, one multiple-ack per `ack_every`; timing from consume start."""
    received = 0
    last: list[Any] = [None]

    def on_message(message: Any) -> None:
        # raw message, never decoded: the cost of the transport and nothing else
        nonlocal received
        received += 1
        last[0] = message
        if received % ack_every == 0:
            message.ack(multiple=True)

    with Connection(url, heartbeat=0) as connection:
        channel = connection.channel()
        consumer = Consumer(channel, queues=[Queue(queue_name, no_declare=True)],
                            prefetch_count=prefetch, no_ack=False, accept=None)
        consumer.on_message = on_message
        consumer.consume()
        started = time.perf_counter()
        cpu_started = _cpu_seconds()
        deadline = started + timeout
        while received < count:
            try:
                connection.drain_events(timeout=1.0)
            except TimeoutError:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"only {received} of {count} messages in {timeout:.0f}s") from None
        if received % ack_every and last[0] is not None:
            last[0].ack(multiple=True)
        seconds = time.perf_counter() - started
        cpu_seconds = _cpu_seconds() - cpu_started
        consumer.cancel()
    return {"messages": received, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "peak_rss_kb": _peak_rss_kb()}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, drain, print the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.bare_drain", description=__doc__)
    parser.add_argument("url", help="AMQP URL of the broker")
    parser.add_argument("queue", help="existing queue to drain")
    parser.add_argument("count", type=int, help="messages to consume")
    parser.add_argument("--prefetch", type=int, default=500, help="basic.qos prefetch count")
    parser.add_argument("--ack-every", type=int, default=200, help="messages per multiple-ack")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after seconds")
    args = parser.parse_args(argv)
    result = drain(args.url, args.queue, args.count, prefetch=args.prefetch,
                   ack_every=args.ack_every, timeout=args.timeout)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
