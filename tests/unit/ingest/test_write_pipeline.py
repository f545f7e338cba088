"""The write-then-ack pipeline through its public interface: plain deliveries, fakeredis."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pytest
import redis

from releng_hardware.core.events import Skip, parse_message
from releng_hardware.ingest.pipeline import WAIT_STEP, Backoff, WritePipeline, backoff_delay, pause
from releng_hardware.store.machines import Store
from tests.conftest import NOW, fail_first_record, queue_message


def event(name: str) -> Any:
    """The parsed outcome of a fixture message."""
    data = queue_message(name)
    return parse_message(data["exchange"], data["routing_key"], data["body"], NOW, ("releng-hardware",))


class Acks:
    """The `ack` callback: records each delivery acked; deliveries in `gone` can no longer be."""

    def __init__(self) -> None:
        self.acked: list[Any] = []
        self.gone: set[Any] = set()

    def __call__(self, delivery: Any) -> bool:
        if delivery in self.gone:
            return False
        self.acked.append(delivery)
        return True


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def acks() -> Acks:
    return Acks()


@pytest.fixture
def make_pipeline(store: Store, acks: Acks) -> Callable[..., WritePipeline]:
    def build(**settings: Any) -> WritePipeline:
        options: dict[str, Any] = {"batch_size": 3, "batch_max_age": 0.25, "give_up_after": 1.0,
                                   "clock": lambda: NOW, "sleep": lambda seconds: None}
        options.update(settings)
        return WritePipeline(store, ack=acks, **options)
    return build


def held_back(store: Store) -> tuple[threading.Event, list[int]]:
    """Make every store.record wait for the returned gate; the list counts writes begun."""
    gate = threading.Event()
    begun: list[int] = []
    record = store.record

    def gated(*args: Any, **kwargs: Any) -> Any:
        begun.append(1)
        assert gate.wait(10), "the test never opened the gate"
        return record(*args, **kwargs)
    store.record = gated  # type: ignore[method-assign]
    return gate, begun


def test_a_full_batch_is_written_then_acked_once_by_its_last_delivery(make_pipeline, acks, store):
    pipeline = make_pipeline(batch_size=3)
    pipeline.add("d1", event("task-running"))
    pipeline.add("d2", event("task-completed"))
    assert pipeline.held == 2 and store.machines() == [] and acks.acked == []
    pipeline.add("d3", event("task-exception-deadline-no-worker"))  # the batch is full
    pipeline.settle()
    assert {m.machine_id for m in store.machines()} == {"mdc1:t-linux64-ms-100", "mdc2:t-w1064-ms-281"}
    assert acks.acked == ["d3"]
    counters = pipeline.counters
    assert (counters.processed, counters.written, counters.skipped) == (3, 2, 1)
    assert store.listener_status()["processed"] == "3"


def test_a_batch_goes_out_on_the_tick_after_it_is_old_enough(make_pipeline, acks, store):
    clock = Clock()
    pipeline = make_pipeline(batch_size=100, batch_max_age=0.25, monotonic=clock)
    pipeline.add("d1", event("task-running"))
    clock.now += 0.1
    pipeline.tick()
    assert pipeline.held == 1
    clock.now += 0.2
    pipeline.tick()
    pipeline.settle()
    assert acks.acked == ["d1"] and len(store.machines()) == 1


def test_nothing_is_acked_before_its_write_and_batches_are_acked_in_order(make_pipeline, acks, store):
    gate, begun = held_back(store)
    pipeline = make_pipeline(batch_size=1)
    pipeline.add("d1", event("task-running"))
    pipeline.add("d2", event("task-completed"))
    pipeline.settle(block=False)
    assert acks.acked == [] and pipeline.in_flight == 2
    gate.set()
    pipeline.settle()
    assert acks.acked == ["d1", "d2"] and pipeline.in_flight == 0


def test_at_most_two_writes_are_in_flight(make_pipeline, acks, store):
    gate, begun = held_back(store)
    pipeline = make_pipeline(batch_size=1)
    threading.Timer(0.3, gate.set).start()
    in_flight = []
    for number in range(6):
        pipeline.add(f"d{number}", event("task-running"))
        in_flight.append(pipeline.in_flight)
    pipeline.settle()
    assert max(in_flight) == 2
    assert acks.acked == [f"d{number}" for number in range(6)] and len(begun) == 6


def test_a_redis_outage_holds_the_ack_until_the_write_succeeds(make_pipeline, acks, store, fake_server):
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 5:
            fake_server.connected = True

    kept_alive: list[int] = []
    pipeline = make_pipeline(batch_size=1, sleep=sleep, keep_alive=lambda: kept_alive.append(1))
    fake_server.connected = False
    pipeline.add("d1", event("task-completed"))
    pipeline.settle()
    assert len(sleeps) >= 5 and len(kept_alive) >= 5
    assert acks.acked == ["d1"]
    assert store.machine("mdc2:t-w1064-ms-281") is not None


def test_stopping_during_an_outage_leaves_every_batch_unacked(make_pipeline, acks, fake_server):
    stopping: list[bool] = []
    pipeline = make_pipeline(batch_size=1, should_stop=lambda: bool(stopping),
                             sleep=lambda seconds: stopping.append(True))
    fake_server.connected = False
    pipeline.add("d1", event("task-completed"))
    pipeline.add("d2", event("task-running"))
    pipeline.settle()
    assert acks.acked == [] and pipeline.in_flight == 0 and stopping


def test_any_redis_error_is_retried_without_acking_and_logged_as_an_error(make_pipeline, acks, store,
                                                                          caplog):
    fail_first_record(store, redis.ResponseError("OOM command not allowed"))
    pipeline = make_pipeline(batch_size=1)
    with caplog.at_level(logging.ERROR, logger="releng_hardware.ingest.pipeline"):
        pipeline.add("d1", event("task-completed"))
        pipeline.settle()
    assert acks.acked == ["d1"] and store.machine("mdc2:t-w1064-ms-281") is not None
    assert any("OOM" in r.getMessage() and "retry 1" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)


def test_forget_drops_held_and_unsettled_batches_unacked(make_pipeline, acks, store):
    gate, _ = held_back(store)
    pipeline = make_pipeline(batch_size=2)
    pipeline.add("d1", event("task-running"))
    pipeline.add("d2", event("task-completed"))
    pipeline.add("d3", event("task-running"))
    assert (pipeline.held, pipeline.in_flight) == (1, 1)
    pipeline.forget()
    gate.set()
    pipeline.flush()
    pipeline.settle()
    assert (pipeline.held, pipeline.in_flight) == (0, 0) and acks.acked == []


def test_a_batch_whose_delivery_can_no_longer_be_acked_is_not_counted(make_pipeline, acks):
    pipeline = make_pipeline(batch_size=1)
    acks.gone.add("d1")
    pipeline.add("d1", event("task-running"))
    pipeline.settle()
    assert acks.acked == [] and pipeline.counters.processed == 0


def test_skips_are_acked_and_counted_by_kind(make_pipeline, acks, store):
    pipeline = make_pipeline(batch_size=3)
    pipeline.add("d1", Skip("not-json", malformed=True, detail="\\xff"))
    pipeline.add("d2", Skip("other-provisioner"))
    pipeline.add("d3", event("task-completed"))
    pipeline.settle()
    assert acks.acked == ["d3"]
    counters = pipeline.counters
    assert (counters.malformed, counters.skipped) == (1, 1)
    assert counters.skip_reasons == {"not-json": 1, "other-provisioner": 1}
    assert store.listener_status()["malformed"] == "1"


def test_retry_runs_a_call_until_it_succeeds_with_growing_waits(make_pipeline):
    sleeps: list[float] = []
    pipeline = make_pipeline(sleep=sleeps.append)
    outcomes = iter([redis.ConnectionError("down"), redis.TimeoutError("slow"), "done"])

    def call() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert pipeline.retry(call) == "done"
    assert sleeps, "no backoff between attempts"


def test_retry_gives_up_with_none_when_asked_to_stop(make_pipeline):
    stopping: list[bool] = []
    pipeline = make_pipeline(should_stop=lambda: bool(stopping), sleep=lambda s: stopping.append(True))

    def call() -> None:
        raise redis.ConnectionError("down")

    assert pipeline.retry(call) is None


def test_pause_sleeps_in_short_steps_keeping_alive_and_ends_on_a_stop():
    clock = Clock()
    steps: list[float] = []
    kept_alive: list[int] = []

    def sleep(seconds: float) -> None:
        steps.append(seconds)
        clock.now += seconds

    pause(1.0, keep_alive=lambda: kept_alive.append(1), should_stop=lambda: False, sleep=sleep,
          monotonic=clock)
    assert sum(steps) == pytest.approx(1.0) and max(steps) <= 0.2 and len(kept_alive) == len(steps)
    steps.clear()
    pause(5.0, keep_alive=lambda: None, should_stop=lambda: len(steps) >= 2, sleep=sleep,
          monotonic=clock)
    assert len(steps) == 2


@pytest.mark.parametrize("attempt", range(0, 30, 3))
def test_backoff_grows_is_capped_and_jittered(attempt):
    assert backoff_delay(attempt, rand=lambda: 1.0) == min(30.0, 2 ** attempt)
    assert backoff_delay(attempt, rand=lambda: 0.0) == 0.0


def fake_time() -> tuple[Clock, list[float], Callable[[float], None]]:
    """A hand-moved monotonic clock, the list of steps slept, and a sleep that moves the clock."""
    clock, slept = Clock(), []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
    return clock, slept, sleep


def test_backoff_counts_each_try_and_waits_doubling_up_to_its_cap():
    clock, slept, sleep = fake_time()
    kept_alive: list[int] = []
    backoff = Backoff(keep_alive=lambda: kept_alive.append(1), should_stop=lambda: False,
                      base=0.5, cap=10.0, sleep=sleep, monotonic=clock, rand=lambda: 1.0)
    tries: list[tuple[int, float]] = []
    waited: list[float] = []
    for _ in range(7):
        delay = backoff.next_delay()
        tries.append((backoff.attempt, delay))
        started = clock.now
        assert backoff.wait(delay)
        waited.append(clock.now - started)
    assert tries == [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 10.0), (7, 10.0)]
    assert waited == pytest.approx([delay for _, delay in tries])
    assert max(slept) <= WAIT_STEP and len(kept_alive) == len(slept)


def test_backoff_starts_again_from_the_shortest_wait_once_reset():
    backoff = Backoff(keep_alive=lambda: None, should_stop=lambda: False, rand=lambda: 1.0)
    delays = [backoff.next_delay() for _ in range(3)]
    backoff.reset()
    assert (delays, backoff.next_delay(), backoff.attempt) == ([1.0, 2.0, 4.0], 1.0, 1)


def test_backoff_cuts_its_wait_short_and_says_give_up_when_asked_to_stop():
    clock, slept, sleep = fake_time()
    backoff = Backoff(keep_alive=lambda: None, should_stop=lambda: len(slept) >= 2, sleep=sleep,
                      monotonic=clock, rand=lambda: 1.0)
    assert not backoff.wait(backoff.next_delay())
    assert sum(slept) == pytest.approx(2 * WAIT_STEP)


def test_retry_numbers_its_tries_and_keeps_redis_waits_short(make_pipeline, caplog):
    clock, slept, sleep = fake_time()
    pipeline = make_pipeline(sleep=sleep, monotonic=clock)
    outcomes = iter([redis.ConnectionError("down")] * 6 + ["done"])

    def call() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with caplog.at_level(logging.WARNING, logger="releng_hardware.ingest.pipeline"):
        assert pipeline.retry(call) == "done"
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("; ")[1].split(" in ")[0] for line in lines] == [
        f"retry {attempt}" for attempt in range(1, 7)]
    # full jitter: each wait at most 0.5s doubled per retry, never over 10s
    delays = [float(line.rsplit(" in ", 1)[1].rstrip("s")) for line in lines]
    assert all(delay <= min(10.0, 0.5 * 2 ** n) + 0.05 for n, delay in enumerate(delays))
    assert sum(slept) == pytest.approx(sum(delays), abs=0.3)
