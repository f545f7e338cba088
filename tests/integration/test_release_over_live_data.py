"""A release over the data of the one before: the previous release (the commit before the
subpackages, patched here so that what it stores differs from what this one makes) records,
preloads and serves on the real Redis, storing its judgements, views and orders; this release
then reads that prefix and must answer exactly as it does on a fresh prefix fed the same input,
keeping nothing the other stored."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import REDIS_URL, ROOT, require_service, unique

# The release before the subpackages.
PREVIOUS_RELEASE = "4dabb8d"
MACHINE = "mdc1:t-host-000"
# What every release serves, read after the feed; the old release's reads store its views,
# judgements and machine order.
READS = ("/machines", "/machines?sort=-machine", "/machines?limit=40", f"/machines/{MACHINE}",
         "/summary", "/labels", "/machines?format=csv", "/")
# The keys of the derived data, each of which must hold what this release makes.
DERIVED_HASHES = ("index:judged", "index:views", "index:counts")
# Fields that grow with time (equal here under one clock; left out so the test says what it means).
AGE_FIELDS = {"age_seconds", "age"}

# One driver, both layouts: feed (deterministic traffic through Store.record, the inventory and
# a quarantine) or read (the app's test client on every path in argv, JSON on stdout).
DRIVER = '''
import json, os, random, sys
from datetime import datetime, timedelta
try:  # the release under test
    from releng_hardware.core.config import Config
    from releng_hardware.core.events import PendingEvent, WorkerEvent
    from releng_hardware.core.records import Quarantine
    from releng_hardware.store.machines import Store, open_redis
    from releng_hardware.web.app import create_app
except ImportError:  # the release before the subpackages
    from releng_hardware.config import Config
    from releng_hardware.events import PendingEvent, WorkerEvent
    from releng_hardware.records import Quarantine
    from releng_hardware.store import Store, open_redis
    from releng_hardware.web import create_app
import releng_hardware

NOW = datetime(2026, 11, 20, 15, 0, 0)
DEADLINE = NOW + timedelta(days=1)
config = Config.from_environ(os.environ)
client = open_redis(config.redis_url)
mode = sys.argv[1]
if mode == "feed":
    store = Store(client, config.redis_key_prefix, recent_tasks=config.recent_tasks,
                  peer_window=config.peer_window, peer_failures=config.peer_failures)
    rng = random.Random(22)
    events = []
    worker_types = ("gecko-t-linux-talos", "gecko-t-win10-64-hw", "gecko-t-osx-1015", "spare")
    for number in range(120):
        datacenter = ("mdc1", "mdc2", "macmdc")[number % 3]
        worker_type = worker_types[number % 4]
        moment = NOW - timedelta(minutes=rng.uniform(1, 3 * 24 * 60))
        for run in range(rng.randrange(1, 12)):
            state = rng.choices(("completed", "failed", "exception", "running"),
                                weights=(6, 3, 1, 1 if run == 0 else 0))[0]
            reason = {"completed": "completed", "failed": "failed", "running": None}.get(
                state, rng.choice(("worker-shutdown", "claim-expired", "canceled")))
            events.append(WorkerEvent(
                datacenter, "t-host-%03d" % number, "releng-hardware", worker_type,
                "%04d%02dAAQAGAAAAAAAAAAA" % (number, run), 0, state, reason, moment, DEADLINE,
                True, started=moment - timedelta(minutes=20),
                label="test-%s-opt-%d" % (worker_type, run % 3)))
            moment -= timedelta(minutes=rng.uniform(5, 90))
    events += [PendingEvent("releng-hardware", worker_type, "PEND%04dAAQAGAAAAAAAA" % at, 0, NOW,
                            DEADLINE) for worker_type in worker_types[:2] for at in range(3)]
    events.sort(key=lambda event: getattr(event, "lastseen", NOW))
    for at in range(0, len(events), 40):
        store.record(events[at:at + 40], now=NOW)
    store.update_inventory(lambda current: {"mdc1:t-host-000": "gecko-t-linux-talos",
                                            "mdc1:t-never-seen": "spare"})
    store.set_quarantine("mdc2:t-host-001", Quarantine(
        "2026-11-21T15:00:00.000000", "disk", "someone", "releng-hardware/gecko-t-win10-64-hw"))
    print(releng_hardware.__file__)
else:
    app = create_app(config, client, clock=lambda: NOW)
    app.testing = True
    web = app.test_client()
    answers = {}
    for path in sys.argv[2:]:
        response = web.get(path)
        answers[path] = [response.status_code, response.get_data(as_text=True)]
    print(json.dumps({"file": releng_hardware.__file__, "answers": answers}))
'''

PRELOADED = [{"machine": f"t-pre-{number:03d}", "datacenter": "mdc4",
              "lastseen": f"2026-11-{10 + number % 9:02d}T08:47:50.939514"}
             for number in range(30)]


def previous_release(into: Path) -> Path:
    """The previous release's tree in `into`, patched so that what it stores differs from what
    any release makes: a field in its machine JSON, and a rule that finds exceptions everywhere.
    Skips when the repository's history is not here."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"git history is not available ({PREVIOUS_RELEASE}): "
                    f"{archive.stderr.decode(errors='replace').strip()[:200]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    _patch(into / "releng_hardware" / "fleet.py", '        "source": get("source"),\n',
           '        "source": get("source"),\n        "stored_by": "the release before",\n')
    _patch(into / "releng_hardware" / "problems.py", '"exceptions": has_exceptions,',
           '"exceptions": lambda *args: True,')
    return into


def _patch(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: {old!r}"
    path.write_text(text.replace(old, new))


def run(tree: Path, prefix: str, *args: str, stdin: bytes | None = None) -> str:
    """The driver (or a script of the tree, args[0] ending in .py) run by `tree`'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree), "REDIS_URL": REDIS_URL,
           "REDIS_KEY_PREFIX": prefix}
    env.pop("TASKCLUSTER_ROOT_URL", None)
    command = [sys.executable, *args] if args[0].endswith(".py") else [
        sys.executable, "-c", DRIVER, *args]
    done = subprocess.run(command, cwd=tree, env=env, input=stdin, capture_output=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done.stdout.decode()


def feed(tree: Path, prefix: str) -> None:
    """The same input, through `tree`'s entry points: records, then a preload."""
    assert run(tree, prefix, "feed").strip() == str(tree / "releng_hardware" / "__init__.py")
    run(tree, prefix, "preload_redis.py", stdin=orjson.dumps(PRELOADED))


def read(tree: Path, prefix: str) -> dict[str, tuple[int, str]]:
    out = json.loads(run(tree, prefix, "read", *READS))
    assert out["file"] == str(tree / "releng_hardware" / "__init__.py")
    return {path: (status, body) for path, (status, body) in out["answers"].items()}


def without_ages(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_ages(item) for key, item in value.items() if key not in AGE_FIELDS}
    if isinstance(value, list):
        return [without_ages(item) for item in value]
    return value


def comparable(path: str, body: str) -> Any:
    if "format=csv" in path:
        rows = list(csv.reader(io.StringIO(body)))
        kept = [at for at, name in enumerate(rows[0]) if name not in AGE_FIELDS]
        return [[row[at] for at in kept] for row in rows]
    if path == "/":
        return body
    return without_ages(json.loads(body))


def derived_values(client: Any, prefix: str) -> dict[str, Any]:
    values: dict[str, Any] = {name: client.hgetall(prefix + name) for name in DERIVED_HASHES}
    values["index:attention"] = client.zrange(prefix + "index:attention", 0, -1, withscores=True)
    values["machine_order"] = client.zrange(prefix + "machine_order", 0, -1)
    values["index:groups"] = sorted(client.smembers(prefix + "index:groups"))
    for group in values["index:groups"]:
        for kind in ("seen", "running"):
            values[f"index:{kind}:{group}"] = client.zrange(f"{prefix}index:{kind}:{group}", 0, -1,
                                                            withscores=True)
    return values


def test_a_release_serves_nothing_the_release_before_stored(tmp_path, real_redis):
    require_service("Redis", "127.0.0.1", 6379)
    old_tree = previous_release(tmp_path / "previous")
    over_old, fresh = unique("test") + ":", unique("test") + ":"
    try:
        feed(old_tree, over_old)
        stored_by_old = read(old_tree, over_old)
        # the old release stored views of its own (its extra field) and judged by its rule
        assert '"stored_by"' in stored_by_old["/machines"][1]
        assert any("stored_by" in view for view in real_redis.hvals(over_old + "index:views"))
        assert real_redis.get(over_old + "machine_order_state") == "done"

        feed(ROOT, fresh)
        served_over_old, served_fresh = read(ROOT, over_old), read(ROOT, fresh)
        for path in READS:
            status, body = served_over_old[path]
            assert status == 200, (path, body[:300])
            assert "stored_by" not in body, path
            assert (status, comparable(path, body)) == (
                served_fresh[path][0], comparable(path, served_fresh[path][1])), path
        assert derived_values(real_redis, over_old) == derived_values(real_redis, fresh)
    finally:
        for prefix in (over_old, fresh):
            keys = list(real_redis.scan_iter(match=prefix + "*", count=1000))
            if keys:
                real_redis.delete(*keys)
