"""Kombu wiring: the durable Pulse queue, its bindings, batching, acks, reconnects, signals."""

from __future__ import annotations

import logging
import queue
import random
import signal
import ssl
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

import redis
from kombu import Connection, Exchange, Queue, binding
from kombu.mixins import ConsumerMixin

from .config import Config, mask_url
from .events import Skip, bindings, parse_message
from .store import BatchResult, Store, SweepStep
from .times import utcnow

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
# Batches being written while the next one is read: enough to keep Redis and the broker
# busy at once, few enough that a stall holds little unacknowledged work.
MAX_WRITES_IN_FLIGHT = 2
# The retention sweep runs here, in the one process that writes, as a bounded step on the
# heartbeat's 30 s tick: each step examines this many machines (a few milliseconds of Redis
# time), so a pass over 100,000 machines takes 20 steps, ten minutes, with one listener,
# and less with several (they share the cursor).
SWEEP_STEP = 5000


def declare_queue(config: Config) -> Queue:
    """The durable queue, bound to the queue service's exchanges for our provisioners."""
    return Queue(
        config.queue_name,
        durable=True,
        auto_delete=False,
        exclusive=False,
        bindings=[
            # passive: Pulse owns these exchanges and refuses to let clients declare them
            binding(Exchange(exchange_name, type="topic", passive=True), routing_key=routing_key)
            for exchange_name, routing_key in bindings(config.provisioner_ids)
        ],
    )


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 30.0,
                  rand: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: spread reconnecting clients apart."""
    return rand() * min(cap, base * 2 ** min(attempt, 16))


@dataclass
class Counters:
    """What this process has seen since it started (the store keeps the shared totals)."""

    processed: int = 0
    written: int = 0
    duplicates: int = 0
    skipped: int = 0
    malformed: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)


class Writer:
    """One daemon thread running Redis writes in order, so reading goes on meanwhile.

    A daemon, unlike a ThreadPoolExecutor's worker, never holds up the exit after SIGTERM
    while Redis is frozen; a write cut short is atomic and its batch stays unacknowledged.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[[], Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="redis-writer", daemon=True).start()

    def submit(self, job: Callable[[], Any]) -> Future:
        """Queue a write; its Future holds the result or the exception."""
        future: Future = Future()
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

    future: Future
    write: Callable[[], BatchResult]
    last_message: Any
    size: int
    skips: list[Skip]


class Listener(ConsumerMixin):
    """Consumes the queue in batches: write a batch to Redis, then ack it with one multiple-ack."""

    def __init__(
        self,
        connection: Connection,
        store: Store,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.store = store
        self.config = config
        self.queue = declare_queue(config)
        self._claim_timeout = timedelta(seconds=config.claim_timeout)
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.counters = Counters()
        self.connects = 0
        self._batch: list[tuple[Any, Any]] = []  # (message, event or Skip)
        self._writes: deque[_Write] = deque()
        self._writer = Writer()
        self._batch_started = 0.0
        self._last_heartbeat = 0.0
        self._sweep: Future | None = None
        self._channel: Any = None

    # -- kombu hooks --------------------------------------------------------

    def get_consumers(self, Consumer: Callable[..., Any], channel: Any) -> list[Any]:
        consumer = Consumer(queues=[self.queue], callbacks=[], accept=None,
                            prefetch_count=self.config.prefetch, no_ack=False)
        # on_message gets the raw message: decoding is ours, so bad bytes are counted, not fatal
        consumer.on_message = self.on_message
        return [consumer]

    @contextmanager
    def establish_connection(self) -> Iterator[Connection]:
        attempt = 0
        while True:
            conn = self.create_connection()
            try:
                conn.connect()
                break
            except conn.connection_errors as exc:
                conn.release()
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("cannot reach broker %s (%s); retrying in %.1fs",
                            mask_url(self.connection.as_uri(include_password=True)), exc, delay)
                self._wait(delay)
                if self.should_stop:
                    raise StopListening() from None
        try:
            yield conn
        finally:
            conn.release()

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        # delivery tags belong to a channel: anything batched on an older one comes again
        self._forget_unacked()
        self._channel = channel
        self.connects += 1
        self._with_redis(lambda: self.store.listener_connected(self.clock(), self.config.queue_name))
        self._report_backlog(channel)
        log.info("consuming %s (connection %d)", self.config.queue_name, self.connects)

    def on_iteration(self) -> None:
        if self._batch and self.monotonic() - self._batch_started >= self.config.batch_max_age:
            self.flush()
        self.settle(block=False)
        if self.monotonic() - self._last_heartbeat >= 30:
            self._last_heartbeat = self.monotonic()
            if not self._batch:
                self._with_redis(lambda: self.store.listener_heartbeat(self.clock()))
            self.sweep()

    def sweep(self) -> None:
        """Start one step of the retention sweep on the writer, unless one is under way."""
        if not self.config.retention or (self._sweep is not None and not self._sweep.done()):
            return
        cutoff = self.clock() - timedelta(seconds=self.config.retention)
        self._sweep = self._writer.submit(lambda: self.store.remove_expired(cutoff, SWEEP_STEP))
        self._sweep.add_done_callback(lambda done: _log_sweep(done, cutoff))

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        log.warning("broker connection error: %s; retrying in %.1fs", exc, interval)

    # -- messages -----------------------------------------------------------

    def on_message(self, message: Any) -> None:
        """Parse and queue one message for the next flush; never raises."""
        if self.should_stop:
            # kombu may still hand over prefetched messages while cancelling: leave them
            # unacked for the next listener rather than spend the shutdown on new batches
            return
        try:
            info = message.delivery_info
            outcome = parse_message(info.get("exchange", ""), info.get("routing_key", ""),
                                    message.body, self.clock(), self.config.provisioner_ids,
                                    message.content_type, self._claim_timeout)
        except Exception as exc:  # a bug here must not end the consumer loop
            log.exception("unexpected error parsing a message")
            outcome = Skip("parser-error", malformed=True, detail=repr(exc)[:200])
        if isinstance(outcome, Skip) and outcome.malformed:
            log.warning("malformed message skipped: %s %s (routing key %.120s)",
                        outcome.reason, outcome.detail[:200],
                        message.delivery_info.get("routing_key", ""))
        if not self._batch:
            self._batch_started = self.monotonic()
        self._batch.append((message, outcome))
        if len(self._batch) >= self.config.batch_size:
            self.flush()

    def flush(self) -> None:
        """Hand the batch to the writer; at most MAX_WRITES_IN_FLIGHT stay unsettled."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        events = [outcome for _, outcome in batch if not isinstance(outcome, Skip)]
        skips = [outcome for _, outcome in batch if isinstance(outcome, Skip)]
        malformed = sum(1 for skip in skips if skip.malformed)
        now = self.clock()

        def write() -> BatchResult:
            return self.store.record(events, now=now, received_at=now, processed=len(batch),
                                     skipped=len(skips) - malformed, malformed=malformed)

        self._writes.append(_Write(self._writer.submit(write), write, batch[-1][0], len(batch), skips))
        self.settle(block=False)
        while len(self._writes) > MAX_WRITES_IN_FLIGHT:
            self._settle_oldest()

    def settle(self, block: bool = True) -> None:
        """Ack, in order, every batch whose write is done (with block, wait for all of them)."""
        while self._writes and (block or self._writes[0].future.done()):
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        oldest = self._writes[0]
        result = self._result(oldest)
        if result is None:
            # stopping before Redis came back: this batch and every later one stay
            # unacked (a later multiple-ack would cover this one) and come again
            self._writes.clear()
            return
        self._writes.popleft()
        if oldest.last_message.channel is not self._channel:
            return
        # ack after the write: a crash before this line means redelivery, not loss
        oldest.last_message.ack(multiple=True)
        self._count(oldest.size, result.written, result.duplicates, oldest.skips)

    def _result(self, pending: _Write) -> BatchResult | None:
        """The write's result, retried here on failure; None when stopping first."""
        waited = 0.0
        while not pending.future.done():
            wait_futures([pending.future], timeout=0.2)
            waited += 0.2
            self._heartbeat_check()
            if self.should_stop and waited > self.config.redis_timeout:
                return None
        error = pending.future.exception()
        if error is None:
            return pending.future.result()
        if not isinstance(error, redis.RedisError):
            raise error
        if self.should_stop:
            return None
        _log_write_failure(error, "retrying now")
        return self._with_redis(pending.write)

    def _forget_unacked(self) -> None:
        """Drop batches of a channel that is gone; the broker delivers them again."""
        self._batch.clear()
        self._writes.clear()

    def _count(self, processed: int, written: int, duplicates: int, skips: list[Skip]) -> None:
        counters = self.counters
        counters.processed += processed
        counters.written += written
        counters.duplicates += duplicates
        for skip in skips:
            if skip.malformed:
                counters.malformed += 1
            else:
                counters.skipped += 1
            counters.skip_reasons[skip.reason] = counters.skip_reasons.get(skip.reason, 0) + 1

    def _with_redis(self, write: Callable[[], Any]) -> Any:
        """Run a Redis write until it succeeds, keeping AMQP heartbeats going; None if stopping."""
        attempt = 0
        while True:
            try:
                return write()
            except redis.RedisError as exc:
                delay = backoff_delay(attempt, base=0.5, cap=10.0)
                attempt += 1
                _log_write_failure(exc, f"retry {attempt} in {delay:.1f}s")
                self._wait(delay)
                if self.should_stop:
                    return None

    def _wait(self, seconds: float) -> None:
        """Sleep in short steps, answering AMQP heartbeats and a stop request."""
        deadline = self.monotonic() + seconds
        while not self.should_stop and self.monotonic() < deadline:
            self.sleep(min(0.2, max(0.0, deadline - self.monotonic())))
            self._heartbeat_check()

    def _heartbeat_check(self) -> None:
        if self._channel is None:
            return
        try:
            self._channel.connection.client.heartbeat_check()
        except Exception:  # the next drain_events will surface a dead connection
            log.debug("heartbeat check failed", exc_info=True)

    def _report_backlog(self, channel: Any) -> None:
        try:
            _, backlog, consumers = channel.queue_declare(
                self.config.queue_name, passive=True)
        except Exception:
            log.debug("could not read the queue backlog", exc_info=True)
            return
        level = logging.WARNING if backlog > self.config.backlog_warning else logging.INFO
        log.log(level, "queue %s holds %d messages (%d consumers)%s", self.config.queue_name,
                backlog, consumers,
                "; Pulse deletes queues that grow too large" if level == logging.WARNING else "")

    # -- running --------------------------------------------------------------

    def run_until_stopped(self) -> None:
        """Consume until should_stop, reconnecting with backoff after broker errors."""
        errors = self.connection.connection_errors + self.connection.channel_errors
        attempt = 0
        while not self.should_stop:
            try:
                for _ in self.consume(safety_interval=min(1.0, self.config.batch_max_age)):
                    attempt = 0
            except StopListening:
                break
            except Exception as exc:
                self._forget_unacked()
                self._channel = None
                if self.should_stop:
                    break
                delay = backoff_delay(attempt)
                attempt += 1
                if isinstance(exc, errors):
                    log.warning("lost the broker connection (%s); reconnecting in %.1fs", exc, delay)
                else:  # never let a surprise end the loop: Pulse would delete an unread queue
                    log.exception("unexpected error; reconnecting in %.1fs", delay)
                self._wait(delay)
        log.info("stopped after %d messages (%d written, %d duplicates, %d skipped, %d malformed)",
                 self.counters.processed, self.counters.written, self.counters.duplicates,
                 self.counters.skipped, self.counters.malformed)

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        # stopping cleanly: write and ack what we hold, unless Redis is away
        if self._channel is channel:
            self.flush()
            self.settle()

    def stop(self, *_: Any) -> None:
        """Ask the loop to stop at its next turn (used as the SIGTERM/SIGINT handler)."""
        self.should_stop = True


def _log_sweep(done: Future, cutoff: datetime) -> None:
    exc = done.exception()
    if exc is not None:
        # the next tick tries again: nothing is lost by skipping a step
        log.warning("retention sweep step failed: %s", exc)
        return
    step: SweepStep = done.result()
    if step.removed:
        log.info("removed %d machines not seen since %s (retention)", step.removed,
                 cutoff.isoformat(timespec="seconds"))


def _log_write_failure(exc: Exception, next_step: str) -> None:
    # an outage is expected now and then; any other Redis error is worth an alarm
    level = logging.WARNING if isinstance(exc, REDIS_ERRORS) else logging.ERROR
    log.log(level, "Redis write failed (%s); %s", exc, next_step)


class StopListening(Exception):
    """Raised to leave a connection attempt when asked to stop."""


def install_signal_handlers(listener: Listener) -> None:
    """SIGTERM (Heroku's stop) and SIGINT end the loop cleanly."""
    signal.signal(signal.SIGTERM, listener.stop)
    signal.signal(signal.SIGINT, listener.stop)


def tls_options(amqp_url: str) -> dict[str, Any] | None:
    """For amqps://, verify the certificate and the host name (ssl=True alone skips the name)."""
    if not amqp_url.startswith("amqps://"):
        return None
    # kombu fills a None server_hostname with the URL's host, which turns on check_hostname
    return {"server_hostname": None, "cert_reqs": ssl.CERT_REQUIRED}


def open_connection(config: Config) -> Connection:
    """The broker connection, with heartbeats on (kombu's default has none)."""
    return Connection(
        config.amqp_url,
        heartbeat=config.amqp_heartbeat,
        ssl=tls_options(config.amqp_url),
        connect_timeout=10,
        transport_options={"confirm_publish": True},
    )


def main(config: Config, store: Store) -> int:
    """Run the listener until SIGTERM; the exit code."""
    connection = open_connection(config)
    listener = Listener(connection, store, config)
    install_signal_handlers(listener)
    log.info("listening on %s as %s for provisioners %s",
             mask_url(connection.as_uri(include_password=True)), config.queue_name,
             ",".join(config.provisioner_ids))
    listener.run_until_stopped()
    return 0
