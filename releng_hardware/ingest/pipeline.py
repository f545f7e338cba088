"""The ordered write-then-ack pipeline: batches written to Redis on a second thread, acked in order.

Free of kombu: a delivery is whatever the `ack` callback acknowledges, so the rules that keep
delivery at least once (ack only after the write, in order, nothing across a reconnect) are
tested here with plain values.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, TypeVar

import redis

from ..core.events import Event, Skip
from ..store.machines import BatchResult, Store, is_passing_outage
from ..core.times import utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")

# Batches being written while the next one is read: enough to keep Redis and the broker
# busy at once, few enough that a stall holds little unacknowledged work.
MAX_WRITES_IN_FLIGHT = 2
# Longest step of any wait, so AMQP heartbeats and a stop request are answered meanwhile.
WAIT_STEP = 0.2
# Backoff between tries, doubling from BASE up to CAP seconds (before jitter): the broker's.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
# A failed Redis write holds every later ack back, so Redis is tried again sooner.
REDIS_RETRY_BASE = 0.5
REDIS_RETRY_CAP = 10.0


def backoff_delay(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
                  rand: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: spread reconnecting clients apart."""
    return rand() * min(cap, base * 2.0 ** min(attempt, 16))


def pause(seconds: float, *, keep_alive: Callable[[], None], should_stop: Callable[[], bool],
          sleep: Callable[[float], None] = time.sleep,
          monotonic: Callable[[], float] = time.monotonic) -> None:
    """Sleep up to `seconds` in short steps, calling keep_alive after each; end early on a stop."""
    deadline = monotonic() + seconds
    while not should_stop() and monotonic() < deadline:
        sleep(min(WAIT_STEP, max(0.0, deadline - monotonic())))
        keep_alive()


class Backoff:
    """The waits between the tries of something that keeps failing: full-jitter exponential
    backoff (see backoff_delay), each wait cut by `pause` into keep-alive steps, ended by a stop.

    The one retry helper: the Redis retries here and the listener's broker reconnects use it,
    each logging `next_delay()` its own way before `wait(delay)`.
    """

    def __init__(self, *, keep_alive: Callable[[], None], should_stop: Callable[[], bool],
                 base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.attempt = 0
        self._keep_alive = keep_alive
        self._should_stop = should_stop
        self._base, self._cap = base, cap
        self._sleep, self._monotonic, self._rand = sleep, monotonic, rand

    def next_delay(self) -> float:
        """The wait before the next try; counts the try (`attempt` is its number, from 1)."""
        delay = backoff_delay(self.attempt, base=self._base, cap=self._cap, rand=self._rand)
        self.attempt += 1
        return delay

    def wait(self, delay: float) -> bool:
        """Wait `delay` seconds in keep-alive steps; False when asked to stop, to give up."""
        pause(delay, keep_alive=self._keep_alive, should_stop=self._should_stop,
              sleep=self._sleep, monotonic=self._monotonic)
        return not self._should_stop()

    def reset(self) -> None:
        """Start again from the shortest wait: what failed works again."""
        self.attempt = 0


@dataclass
class Counters:
    """What this process has acked since it started (the store keeps the shared totals)."""

    processed: int = 0
    written: int = 0
    duplicates: int = 0
    skipped: int = 0
    malformed: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, processed: int, result: BatchResult, skips: list[Skip]) -> None:
        """Count one acked batch."""
        self.processed += processed
        self.written += result.written
        self.duplicates += result.duplicates
        for skip in skips:
            if skip.malformed:
                self.malformed += 1
            else:
                self.skipped += 1
            self.skip_reasons[skip.reason] = self.skip_reasons.get(skip.reason, 0) + 1


class Writer:
    """One daemon thread running Redis writes in order, so reading goes on meanwhile.

    A daemon, unlike a ThreadPoolExecutor's worker, never holds up the exit after SIGTERM
    while Redis is frozen; a write cut short is atomic and its batch stays unacknowledged.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="redis-writer", daemon=True).start()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Queue a write; its Future holds the result or the exception."""
        future: Future[T] = Future()
        self._jobs.put((future, job))
        return future

    def _run(self) -> None:
        while True:
            future, job = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:  # handed to the consumer thread, which decides
                    future.set_exception(exc)


@dataclass
class _Write:
    """A batch whose Redis write is under way; acked once it (and every earlier one) is done."""

    future: Future[BatchResult]
    write: Callable[[], BatchResult]
    last_delivery: Any
    size: int
    skips: list[Skip]


class WritePipeline:
    """Deliveries in, batched; each batch written to Redis, then acked, strictly in order.

    A batch goes to the writer thread when it holds `batch_size` deliveries or its oldest is
    `batch_max_age` seconds old (see `tick`). At most `max_in_flight` writes are unsettled:
    adding more waits for the oldest. A batch is acked with its last delivery (`ack` covers
    every earlier one, as AMQP's multiple-ack does) only after its own write and every earlier
    one succeeded. Failed writes are retried with backoff until they succeed or `should_stop`
    turns true; then they and every later batch stay unacked, for the broker to deliver again.
    Every wait is cut in short steps that call `keep_alive`.
    """

    def __init__(
        self,
        store: Store,
        *,
        ack: Callable[[Any], bool],
        batch_size: int,
        batch_max_age: float,
        give_up_after: float,
        keep_alive: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        max_in_flight: int = MAX_WRITES_IN_FLIGHT,
    ) -> None:
        self.counters = Counters()
        self._store = store
        self._ack = ack
        self._batch_size = batch_size
        self._batch_max_age = batch_max_age
        self._give_up_after = give_up_after
        self._keep_alive = keep_alive
        self._should_stop = should_stop
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._max_in_flight = max_in_flight
        self._batch: list[tuple[Any, Event | Skip]] = []
        self._batch_started = 0.0
        self._writes: list[_Write] = []
        self._writer = Writer()

    @property
    def held(self) -> int:
        """Deliveries batched but not yet handed to the writer."""
        return len(self._batch)

    @property
    def in_flight(self) -> int:
        """Batches handed to the writer and not yet acked."""
        return len(self._writes)

    def add(self, delivery: Any, outcome: Event | Skip) -> None:
        """Batch one delivery with its parsed outcome; a full batch goes to the writer."""
        if not self._batch:
            self._batch_started = self._monotonic()
        self._batch.append((delivery, outcome))
        if len(self._batch) >= self._batch_size:
            self.flush()

    def tick(self) -> None:
        """Hand over a batch that waited long enough; ack every batch whose write is done."""
        if self._batch and self._monotonic() - self._batch_started >= self._batch_max_age:
            self.flush()
        self.settle(block=False)

    def flush(self) -> None:
        """Hand the batch to the writer; at most `max_in_flight` writes stay unsettled."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        events = [outcome for _, outcome in batch if not isinstance(outcome, Skip)]
        skips = [outcome for _, outcome in batch if isinstance(outcome, Skip)]
        malformed = sum(1 for skip in skips if skip.malformed)
        now = self._clock()

        def write() -> BatchResult:
            return self._store.record(events, now=now, received_at=now, processed=len(batch),
                                      skipped=len(skips) - malformed, malformed=malformed)

        self._writes.append(_Write(self._writer.submit(write), write, batch[-1][0], len(batch), skips))
        self.settle(block=False)
        while len(self._writes) > self._max_in_flight:
            self._settle_oldest()

    def settle(self, block: bool = True) -> None:
        """Ack, in order, every batch whose write is done (with block, wait for all of them)."""
        while self._writes and (block or self._writes[0].future.done()):
            self._settle_oldest()

    def run_in_order(self, job: Callable[[], T]) -> "Future[T]":
        """Run another Redis job on the writer thread, after the writes handed over so far."""
        return self._writer.submit(job)

    def forget(self) -> None:
        """Drop every batch not yet acked: its deliveries' channel is gone, the broker resends them."""
        self._batch.clear()
        self._writes.clear()

    def retry(self, call: Callable[[], T], failure: redis.RedisError | None = None) -> T | None:
        """Run a Redis call until it succeeds, with backoff (after `failure`, if it already
        failed once); None when asked to stop first."""
        backoff = Backoff(keep_alive=self._keep_alive, should_stop=self._should_stop,
                          base=REDIS_RETRY_BASE, cap=REDIS_RETRY_CAP, sleep=self._sleep,
                          monotonic=self._monotonic)
        while True:
            if failure is not None:
                delay = backoff.next_delay()
                _log_write_failure(failure, f"retry {backoff.attempt} in {delay:.1f}s")
                if not backoff.wait(delay):
                    return None
            try:
                return call()
            except redis.RedisError as exc:
                failure = exc

    def _settle_oldest(self) -> None:
        oldest = self._writes[0]
        result = self._result(oldest)
        if result is None:
            # stopping before Redis came back: this batch and every later one stay
            # unacked (a later multiple-ack would cover this one) and come again
            self._writes.clear()
            return
        del self._writes[0]
        # ack after the write: a crash before this line means redelivery, not loss
        if self._ack(oldest.last_delivery):
            self.counters.add(oldest.size, result, oldest.skips)

    def _result(self, pending: _Write) -> BatchResult | None:
        """The write's result, retried here on failure; None when stopping first."""
        waited = 0.0
        while not pending.future.done():
            wait_futures([pending.future], timeout=WAIT_STEP)
            waited += WAIT_STEP
            self._keep_alive()
            if self._should_stop() and waited > self._give_up_after:
                return None
        error = pending.future.exception()
        if error is None:
            return pending.future.result()
        if not isinstance(error, redis.RedisError):
            raise error
        if self._should_stop():
            return None
        return self.retry(pending.write, failure=error)


def _log_write_failure(exc: Exception, next_step: str) -> None:
    # an outage is expected now and then; any other Redis error is worth an alarm
    level = logging.WARNING if is_passing_outage(exc) else logging.ERROR
    log.log(level, "Redis write failed (%s); %s", exc, next_step)
