"""Stored derived data is keyed by the code that made it: a release that changes a field of the
machine or a record rule serves none of what the one before stored; and a read waits for the
machine index only so long, then answers the long way."""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from importlib import resources
from typing import Any, Callable, Iterator

import fakeredis
import pytest

from releng_hardware.core import problems
from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.core.problems import Thresholds
from releng_hardware.store.machines import Store
from releng_hardware.views import fleet, reads
from releng_hardware.views.fleet import counted_json, summary
from releng_hardware.views.machine_index import index_fingerprint
from releng_hardware.web.app import create_app
from tests.conftest import DEADLINE, NOW, make_config

MACHINES = 200
# The index's keys holding what was derived from the records, as Redis has them.
DERIVED_HASHES = ("index:judged", "index:views", "index:counts")


def varied_traffic(store: Store, seed: int = 22) -> None:
    """MACHINES machines in three datacenters and four worker types, each with a few runs of
    every outcome, some running (some hung), some stale, work waiting on two worker types."""
    rng = random.Random(seed)
    events: list[WorkerEvent | PendingEvent] = []
    worker_types = ("gecko-t-linux-talos", "gecko-t-win10-64-hw", "gecko-t-osx-1015", "spare")
    for number in range(MACHINES):
        datacenter = ("mdc1", "mdc2", "macmdc")[number % 3]
        worker_type = worker_types[number % len(worker_types)]
        moment = NOW - timedelta(minutes=rng.uniform(1, 3 * 24 * 60))
        for run in range(rng.randrange(1, 9)):
            state = rng.choices(("completed", "failed", "exception", "running"),
                                weights=(6, 3, 1, 1 if run == 0 else 0))[0]
            reason = {"completed": "completed", "failed": "failed", "running": None}.get(
                state, rng.choice(("worker-shutdown", "claim-expired", "canceled")))
            task_id = f"{number:04d}{run:02d}AAQAGAAAAAAAAAAA"
            events.append(WorkerEvent(datacenter, f"t-host-{number:03d}", "releng-hardware",
                                      worker_type, task_id, 0, state, reason, moment, DEADLINE,
                                      True, started=moment - timedelta(minutes=20),
                                      label=f"test-{worker_type}-opt-{run % 3}"))
            moment -= timedelta(minutes=rng.uniform(5, 90))
    events += [PendingEvent("releng-hardware", worker_type, f"PEND{at:04d}AAQAGAAAAAAAA", 0, NOW,
                            DEADLINE) for worker_type in worker_types[:2] for at in range(3)]
    # oldest first, as the queue sends them
    events.sort(key=lambda event: getattr(event, "lastseen", NOW))
    for at in range(0, len(events), 50):
        store.record(events[at:at + 50], now=NOW)
    store.update_inventory(lambda current: {"mdc1:t-host-000": "gecko-t-linux-talos",
                                            "mdc1:t-never-seen": "spare"})


@pytest.fixture
def fresh_digest() -> Iterator[None]:
    """release_digest recomputed in the test and after it (it is cached per process)."""
    derived = _derived()
    if derived is not None:
        derived.release_digest.cache_clear()
    yield
    if derived is not None:
        derived.release_digest.cache_clear()


def _derived() -> Any:
    try:
        from releng_hardware.views import derived
    except ImportError:  # a release from before the digest: nothing tells it the code changed
        return None
    return derived


def a_new_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a release that adds a field to the machine and changes a record rule changes in this
    process: the functions, and the source text the digest reads."""
    with_the_rest = fleet._with_the_rest

    def with_a_rack(machine: dict[str, Any], record: Any, *args: Any) -> Any:
        shown = with_the_rest(machine, record, *args)
        shown["rack"] = f"rack-{record.machine_id[-1]}"
        return shown

    def newest_failed(facts: problems.MachineFacts, *args: Any) -> bool:
        return facts.outcomes[:1] == "f"

    monkeypatch.setattr(fleet, "_with_the_rest", with_a_rack)
    monkeypatch.setitem(problems.RULES, "consecutive_failures", newest_failed)
    monkeypatch.setattr(problems, "_RULES_IN_ORDER",
                        tuple((code, problems.RULES[code]) for code in problems.PROBLEMS))
    monkeypatch.setattr(problems, "_RECORD_RULES",
                        tuple((code, problems.RULES[code]) for code in problems.RECORD_PROBLEMS))
    derived = _derived()
    if derived is not None:
        sources = derived.module_sources

        def changed(*args: Any) -> dict[str, str]:
            texts = dict(sources(*args))
            texts["views.fleet"] += '\n# shown["rack"]\n'
            texts["core.problems"] += "\n# consecutive_failures: the newest run failed\n"
            return texts
        monkeypatch.setattr(derived, "module_sources", changed)
        derived.release_digest.cache_clear()


def app_on(server: fakeredis.FakeServer) -> Any:
    app = create_app(make_config(), redis=fakeredis.FakeRedis(server=server, decode_responses=True),
                     clock=lambda: NOW)
    app.testing = True
    return app


READS = ("/machines", "/machines?sort=-machine", "/summary", "/machines?format=csv",
         "/machines/mdc1:t-host-000", "/labels", "/")


def answers(client: Any) -> dict[str, bytes]:
    out = {}
    for path in READS:
        response = client.get(path)
        assert response.status_code == 200, (path, response.data[:300])
        out[path] = response.data
    return out


def derived_values(store: Store) -> dict[str, Any]:
    redis = store.redis
    values: dict[str, Any] = {name: redis.hgetall(store.prefix + name) for name in DERIVED_HASHES}
    values["index:attention"] = redis.zrange(store.prefix + "index:attention", 0, -1,
                                             withscores=True)
    values["index:groups"] = sorted(redis.smembers(store.prefix + "index:groups"))
    for group in values["index:groups"]:
        for kind in ("seen", "running"):
            key = f"{store.prefix}index:{kind}:{group}"
            values[key] = redis.zrange(key, 0, -1, withscores=True)
    return values


def test_no_stored_judgement_or_view_survives_a_release_that_changes_them(monkeypatch, fresh_digest):
    server = fakeredis.FakeServer()
    store = Store(fakeredis.FakeRedis(server=server, decode_responses=True))
    varied_traffic(store)
    client = app_on(server).test_client()
    before = answers(client)
    assert b'"rack"' not in before["/machines"]
    assert len(store.redis.hgetall("index:views")) == MACHINES  # the views were stored

    a_new_release(monkeypatch)
    after = answers(client)

    fresh_server = fakeredis.FakeServer()
    fresh = app_on(fresh_server)
    varied_traffic(Store(fakeredis.FakeRedis(server=fresh_server, decode_responses=True)))
    expected = answers(fresh.test_client())
    rows = fleet.orjson.loads(after["/machines"])
    assert sum("rack" in row for row in rows) == MACHINES
    assert after == expected
    assert after["/summary"] != before["/summary"]  # the new rule counts other machines
    assert derived_values(store) == derived_values(
        Store(fakeredis.FakeRedis(server=fresh_server, decode_responses=True)))


def test_the_digest_covers_the_fields_the_rules_the_formats_and_every_script():
    from releng_hardware.views import derived
    sources = derived.derived_sources()
    for module in ("views.fields", "views.fleet", "views.machine_index", "core.problems",
                   "core.records", "core.times", "core.identifiers", "core.config"):
        assert module in sources, module
    scripts = {f"store/lua/{entry.name}" for entry in
               resources.files("releng_hardware").joinpath("store", "lua").iterdir()
               if entry.name.endswith(".lua")}
    assert scripts and scripts <= set(sources)
    assert "orjson" in sources
    digest = derived.code_digest(sources)
    assert len(digest) == derived.DIGEST_LENGTH and int(digest, 16) >= 0
    for name in sorted(sources):
        assert derived.code_digest({**sources, name: sources[name] + " "}) != digest, name
    assert derived.code_digest({**sources, "views.new_helper": ""}) != digest


def test_the_digest_is_read_once_per_process(monkeypatch, fresh_digest):
    from releng_hardware.views import derived
    calls: list[int] = []
    real = derived.derived_sources

    def counted() -> dict[str, str]:
        calls.append(1)
        return real()
    monkeypatch.setattr(derived, "derived_sources", counted)
    first = derived.release_digest()
    assert [derived.release_digest() for _ in range(3)] == [first] * 3
    assert len(calls) == 1


def test_the_fingerprint_changes_with_the_thresholds_the_root_url_and_the_code():
    limits = Thresholds()
    base = index_fingerprint(limits, "https://tc.example.com", "c0de")
    assert index_fingerprint(limits, "https://tc.example.com") == index_fingerprint(
        limits, "https://tc.example.com", _derived().release_digest())
    assert len({base, index_fingerprint(limits, "https://tc.example.com", "c0dd"),
                index_fingerprint(limits, "https://other.example.com", "c0de"),
                index_fingerprint(Thresholds(failure_streak=limits.failure_streak + 1),
                                  "https://tc.example.com", "c0de")}) == 4


# -- the deadline -----------------------------------------------------------------

def ticking(step: float) -> Callable[[], float]:
    """A clock that moves `step` seconds at every reading."""
    moments = iter(range(10**9))
    return lambda: next(moments) * step


def never_built(store: Store) -> list[int]:
    """Make every build step of the store's machine index change nothing; the steps taken."""
    steps: list[int] = []
    store.build_machine_index_step = lambda *args, **kwargs: steps.append(1) or False  # type: ignore[method-assign]
    return steps


def test_a_summary_whose_index_never_gets_built_is_counted_from_every_machine(store, config,
                                                                             caplog):
    varied_traffic(store)
    steps = never_built(store)
    with caplog.at_level(logging.WARNING, logger=reads.__name__):
        answer = reads.read_summary(store, config, NOW, clock=ticking(1.0))
    judged = reads.read_fleet(store, config, NOW, view=counted_json)
    assert answer == summary(judged.machines + judged.never_seen, judged.pending,
                             config.stale_after, judged.inventory)
    # the clock moves 1 s a reading: the deadline passes after READY_WITHIN readings at most
    assert 0 < len(steps) <= reads.READY_WITHIN
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "read_fleet" in warnings[0].getMessage()


def test_machines_from_an_index_never_built_are_judged_one_by_one(store, config, caplog):
    varied_traffic(store)
    never_built(store)
    with caplog.at_level(logging.WARNING, logger=reads.__name__):
        assert reads.read_machines_from_views(store, config, NOW, clock=ticking(1.0)) is None
    assert len([record for record in caplog.records
                if record.levelno == logging.WARNING]) == 1


def test_a_backlog_never_judged_in_time_answers_the_long_way(store, config, monkeypatch):
    varied_traffic(store)
    monkeypatch.setattr(reads, "JUDGE_CHUNK", MACHINES // 4)
    judged: list[int] = []
    store.judge_with_views = lambda items: judged.append(len(items)) or 0  # type: ignore[method-assign]
    # more unjudged than a read judges itself, and every chunk judged is lost
    with pytest.raises(reads.IndexNotReady):
        reads.read_index(store, config, NOW, clock=ticking(1.0))
    assert judged


def test_every_view_answers_the_same_past_the_deadline(app_factory, store, monkeypatch, caplog):
    varied_traffic(store)
    client = app_factory().test_client()
    in_time = answers(client)
    store.redis.delete("index:state")  # the next reads must build the index again
    monkeypatch.setattr(reads, "READY_WITHIN", 0.0)
    with caplog.at_level(logging.WARNING):
        late = answers(client)
    assert late == in_time
    fallbacks = [record.getMessage() for record in caplog.records
                 if record.levelno == logging.WARNING and "not ready" in record.getMessage()]
    # /machines twice, /summary and the dashboard: one line each
    assert len(fallbacks) == 4, fallbacks
