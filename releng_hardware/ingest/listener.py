"""Kombu wiring: consume the queue into the write pipeline; reconnects, liveness, signals."""

from __future__ import annotations

import logging
import signal
import time
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

from kombu import Connection
from kombu.mixins import ConsumerMixin

from .broker import (bound_waits, close_connection, declare_queue, drop_connection, open_connection,
                     queue_backlog)
from ..core.config import Config, mask_url
from ..core.events import Skip, parse_message
from .pipeline import Backoff, WritePipeline
from ..taskcluster.poller import start_poller
from ..store.machines import Store, SweepStep
from ..core.times import utcnow
from .watchdog import Watchdog

log = logging.getLogger(__name__)

# How often an idle listener writes its heartbeat (well within LISTENER_STALE_AFTER).
HEARTBEAT_EVERY = 30.0
# The retention sweep runs here, in the one process that writes, as a bounded step on the
# heartbeat's 30 s tick: each step examines this many machines (a few milliseconds of Redis
# time), so a pass over 100,000 machines takes 20 steps, ten minutes, with one listener,
# and less with several (they share the cursor).
SWEEP_STEP = 5000


class Listener(ConsumerMixin):
    """Consumes the queue into a WritePipeline: write a batch to Redis, then ack it."""

    def __init__(
        self,
        connection: Connection,
        store: Store,
        config: Config,
        *,
        watchdog: Watchdog | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        heartbeat_every: float = HEARTBEAT_EVERY,
    ) -> None:
        self.connection = connection
        self.store = store
        self.config = config
        self.queue = declare_queue(config)
        self._claim_timeout = timedelta(seconds=config.claim_timeout)
        self.watchdog = watchdog
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.heartbeat_every = heartbeat_every
        self.connects = 0
        self.pipeline = WritePipeline(
            store, ack=self._ack, batch_size=config.batch_size,
            batch_max_age=config.batch_max_age, give_up_after=config.redis_timeout,
            keep_alive=self._keep_alive, should_stop=lambda: self.should_stop,
            clock=clock, sleep=sleep, monotonic=monotonic)
        self._last_heartbeat = float("-inf")
        self._sweep: Future[SweepStep] | None = None
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
        backoff = self._backoff()
        while True:
            # kombu's ConsumerMixin has no annotations: its methods are untyped to mypy
            conn = self.create_connection()  # type: ignore[no-untyped-call]
            try:
                conn.connect()
                bound_waits(conn)
                break
            except conn.connection_errors as exc:
                drop_connection(conn)
                delay = backoff.next_delay()
                log.warning("cannot reach broker %s (%s); retrying in %.1fs",
                            mask_url(self.connection.as_uri(include_password=True)), exc, delay)
                if not backoff.wait(delay):
                    raise StopListening() from None
        try:
            yield conn
        except BaseException:
            # the peer may be silent for good: never wait for it on the way out
            drop_connection(conn)
            raise
        close_connection(conn)

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        # delivery tags belong to a channel: anything batched on an older one comes again
        self.pipeline.forget()
        self._channel = channel
        self.connects += 1
        self._progress()
        self.pipeline.retry(lambda: self.store.listener_connected(self.clock(), self.config.queue_name))
        self._report_backlog(channel)
        log.info("consuming %s (connection %d)", self.config.queue_name, self.connects)

    def on_iteration(self) -> None:
        """One turn of the consume loop (drain_events returned or timed out): the loop's progress."""
        self._progress()
        self.pipeline.tick()
        # the stored heartbeat comes only from the loop (here and on connecting), never from
        # another thread, so /__heartbeat__ fails when the loop is stuck
        if self.monotonic() - self._last_heartbeat >= self.heartbeat_every:
            self._last_heartbeat = self.monotonic()
            if not self.pipeline.held:  # a batch's own write reports the listener alive
                self.pipeline.retry(lambda: self.store.listener_heartbeat(self.clock()))
            self.sweep()

    def sweep(self) -> Future[SweepStep] | None:
        """Start one step of the retention sweep on the writer, unless one is under way; its Future."""
        if not self.config.retention or (self._sweep is not None and not self._sweep.done()):
            return None
        cutoff = self.clock() - timedelta(seconds=self.config.retention)
        self._sweep = self.pipeline.run_in_order(lambda: self.store.remove_expired(cutoff, SWEEP_STEP))
        self._sweep.add_done_callback(lambda done: _log_sweep(done, cutoff))
        return self._sweep

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        # stopping cleanly: write and ack what we hold, unless Redis is away
        if self._channel is channel:
            self.pipeline.flush()
            self.pipeline.settle()

    # -- messages -----------------------------------------------------------

    def on_message(self, message: Any) -> None:
        """Parse one message and hand it to the pipeline; never raises."""
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
        self.pipeline.add(message, outcome)

    def _ack(self, message: Any) -> bool:
        """Ack this message and every earlier one of its channel, unless the channel is gone."""
        if message.channel is not self._channel:
            return False
        message.ack(multiple=True)
        return True

    # -- liveness -------------------------------------------------------------

    def _progress(self) -> None:
        if self.watchdog is not None:
            self.watchdog.progress()

    def _keep_alive(self) -> None:
        """Between the steps of a wait: answer AMQP heartbeats, show the watchdog we move."""
        self._progress()
        if self._channel is None:
            return
        try:
            self._channel.connection.client.heartbeat_check()
        except Exception:  # the next drain_events will surface a dead connection
            log.debug("heartbeat check failed", exc_info=True)

    def _backoff(self) -> Backoff:
        return Backoff(keep_alive=self._keep_alive, should_stop=lambda: self.should_stop,
                       sleep=self.sleep, monotonic=self.monotonic)

    def _report_backlog(self, channel: Any) -> None:
        backlog = queue_backlog(channel, self.config.queue_name)
        if backlog is None:
            return
        messages, consumers = backlog
        level = logging.WARNING if messages > self.config.backlog_warning else logging.INFO
        log.log(level, "queue %s holds %d messages (%d consumers)%s", self.config.queue_name,
                messages, consumers,
                "; Pulse deletes queues that grow too large" if level == logging.WARNING else "")

    # -- running --------------------------------------------------------------

    def run_until_stopped(self) -> None:
        """Consume until should_stop, reconnecting with backoff after broker errors."""
        errors = self.connection.connection_errors + self.connection.channel_errors
        backoff = self._backoff()
        while not self.should_stop:
            try:
                # untyped in kombu, as create_connection
                for _ in self.consume(  # type: ignore[no-untyped-call]
                        safety_interval=min(1.0, self.config.batch_max_age)):
                    backoff.reset()
            except StopListening:
                break
            except Exception as exc:
                self.pipeline.forget()
                self._channel = None
                if self.should_stop:
                    break
                delay = backoff.next_delay()
                if isinstance(exc, errors):
                    log.warning("lost the broker connection (%s); reconnecting in %.1fs", exc, delay)
                else:  # never let a surprise end the loop: Pulse would delete an unread queue
                    log.exception("unexpected error; reconnecting in %.1fs", delay)
                backoff.wait(delay)
        counters = self.pipeline.counters
        log.info("stopped after %d messages (%d written, %d duplicates, %d skipped, %d malformed)",
                 counters.processed, counters.written, counters.duplicates, counters.skipped,
                 counters.malformed)

    def stop(self, *_: Any) -> None:
        """Ask the loop to stop at its next turn (used as the SIGTERM/SIGINT handler)."""
        self.should_stop = True


def _log_sweep(done: Future[SweepStep], cutoff: datetime) -> None:
    exc = done.exception()
    if exc is not None:
        # the next tick tries again: nothing is lost by skipping a step
        log.warning("retention sweep step failed: %s", exc)
        return
    step: SweepStep = done.result()
    if step.removed:
        log.info("removed %d machines not seen since %s (retention)", step.removed,
                 cutoff.isoformat(timespec="seconds"))


class StopListening(Exception):
    """Raised to leave a connection attempt when asked to stop."""


def install_signal_handlers(listener: Listener) -> None:
    """SIGTERM (Heroku's stop) and SIGINT end the loop cleanly."""
    signal.signal(signal.SIGTERM, listener.stop)
    signal.signal(signal.SIGINT, listener.stop)


def main(config: Config, store: Store, *, taskcluster: Any = None) -> int:
    """Run the listener until SIGTERM; the exit code. Given a Taskcluster client (taskcluster.client),
    it also polls Taskcluster's quarantines on a thread of its own (poller.py)."""
    connection = open_connection(config)
    watchdog = Watchdog(config.listener_watchdog)
    listener = Listener(connection, store, config, watchdog=watchdog)
    install_signal_handlers(listener)
    log.info("listening on %s as %s for provisioners %s",
             mask_url(connection.as_uri(include_password=True)), config.queue_name,
             ",".join(config.provisioner_ids))
    watchdog.start()
    poller = start_poller(config, store, taskcluster)
    listener.run_until_stopped()
    if poller is not None:
        poller.stop()
    return 0
