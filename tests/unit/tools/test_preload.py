"""Preload: all or nothing, never backwards, round-trips /machines."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from click.testing import CliRunner

from releng_hardware import cli
from releng_hardware.tools.preload import PreloadError, parse_entries
from releng_hardware.store.machines import Store
from tests.conftest import NOW


def entries(*rows) -> bytes:
    return json.dumps([{"machine": m, "datacenter": dc, "lastseen": t} for dc, m, t in rows]).encode()


@pytest.fixture
def run_preload(fake_redis, monkeypatch):
    """Run the preload command against the fake server."""
    monkeypatch.setattr(cli, "open_store", lambda config: Store(fake_redis, config.redis_key_prefix))
    monkeypatch.setattr(cli, "utcnow", lambda: NOW)

    def run(raw: bytes, *args: str):
        return CliRunner().invoke(cli.preload, list(args), input=raw, env={"REDIS_URL": "redis://x:6379/0"})
    return run


def test_lastseen_in_every_accepted_form_is_stored_in_the_one_format():
    parsed = parse_entries(entries(
        ("mdc1", "a", "2026-11-20T08:47:50.939514"),
        ("mdc1", "b", "2026-11-20T08:47:50"),
        ("mdc1", "c", "2026-11-20T09:47:50+01:00"),
        ("mdc1", "d", "2026-11-20T08:47:50.5Z"),
    ), NOW)
    assert parsed == {
        "mdc1:a": datetime(2026, 11, 20, 8, 47, 50, 939514),
        "mdc1:b": datetime(2026, 11, 20, 8, 47, 50),
        "mdc1:c": datetime(2026, 11, 20, 8, 47, 50),
        "mdc1:d": datetime(2026, 11, 20, 8, 47, 50, 500000),
    }


def test_extra_fields_are_ignored():
    raw = json.dumps([{"machine": "a", "datacenter": "mdc1", "lastseen": "2026-11-20T08:00:00",
                       "age_seconds": 5, "last_task": {"x": 1}}]).encode()
    assert parse_entries(raw, NOW) == {"mdc1:a": datetime(2026, 11, 20, 8)}


@pytest.mark.parametrize("raw, problem", [
    (b"", "input is empty"),
    (b"   \n", "input is empty"),
    (b'[{"machine": "a", "datacenter": "mdc1", "lastseen": "2026-11-20T08:00:00"', "not valid JSON"),
    (b'{"machine": "a"}', "expected a JSON array of machines, got a JSON object"),
    (b'[{"machine": "a", "datacenter": "mdc1"}]', "entry 0: missing field 'lastseen'"),
    (b'[{"machine": "a", "datacenter": "mdc1", "lastseen": "2026-11-20T08:00:00"}, 7]',
     "entry 1: expected an object, got a JSON number"),
    (entries(("mdc1", "a", "2026-11-20T08:00:00"), ("mdc1", "b", "last tuesday")),
     "entry 1: lastseen: 'last tuesday' is not an ISO 8601 time"),
    (entries(("mdc1", "a", "2027-01-01T00:00:00")), "entry 0: lastseen 2027-01-01T00:00:00 is in the future"),
    (entries(("mdc1", "a", "2026-11-20T08:00:00"), ("mdc1", "a", "2026-11-20T09:00:00")),
     "entry 1: mdc1:a appears twice"),
    (entries(("mdc1", "bad host", "2026-11-20T08:00:00")), "entry 0: machine 'bad host' is not"),
    (json.dumps([{"machine": "a", "datacenter": 5, "lastseen": "2026-11-20T08:00:00"}]).encode(),
     "entry 0: datacenter '5' is not"),
])
def test_bad_input_names_the_entry_and_the_problem(raw, problem):
    with pytest.raises(PreloadError, match=problem.replace("(", r"\(").replace("'", "'")):
        parse_entries(raw, NOW)


def test_bad_file_changes_nothing(run_preload, fake_redis):
    fake_redis.hset("machines", "mdc1:a", "2026-11-19T00:00:00.000000")
    result = run_preload(entries(("mdc1", "a", "2026-11-20T08:00:00"), ("mdc1", "b", "nope")))
    assert result.exit_code == 1
    assert "nothing written: entry 1: lastseen" in result.output
    assert fake_redis.hgetall("machines") == {"mdc1:a": "2026-11-19T00:00:00.000000"}


def test_preload_writes_and_reports_counts(run_preload, fake_redis):
    fake_redis.hset("machines", "mdc1:a", "2026-11-20T10:00:00.000000")
    result = run_preload(entries(("mdc1", "a", "2026-11-20T08:00:00"), ("mdc2", "b", "2026-11-20T08:00:00")))
    assert result.exit_code == 0, result.output
    assert "2 entries read: 1 written, 1 kept because newer" in result.output
    assert fake_redis.hgetall("machines") == {"mdc1:a": "2026-11-20T10:00:00.000000",
                                              "mdc2:b": "2026-11-20T08:00:00.000000"}


def test_dry_run_validates_without_writing(run_preload, fake_redis):
    result = run_preload(entries(("mdc1", "a", "2026-11-20T08:00:00")), "--dry-run")
    assert result.exit_code == 0 and "1 entries valid" in result.output
    assert fake_redis.hlen("machines") == 0


def test_machines_output_round_trips_without_changes(run_preload, fake_redis, store, client):
    from tests.unit.store.test_machines import event
    store.record([event(1), event(2, host="t-linux64-ms-101", dc="mdc2")], now=NOW)
    store.redis.hset("machines", "mdc1:t-legacy-1", "2018-11-08T08:47:50.939514")
    before = store.redis.hgetall("machines")
    exported = client.get("/machines").get_data()
    result = run_preload(exported)
    assert result.exit_code == 0 and "0 written, 3 kept" in result.output
    assert store.redis.hgetall("machines") == before
    assert client.get("/machines").get_data() == exported


def test_a_large_file_loads_in_one_transaction(fake_redis):
    rows = {f"mdc{i % 3}:t-host-{i}": datetime(2026, 11, 20, 8, 0, i % 60) for i in range(20000)}
    written, kept = Store(fake_redis).preload(rows)
    assert (written, kept) == (20000, 0) and fake_redis.hlen("machines") == 20000
