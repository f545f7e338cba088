"""The store writes the bytes it wrote before its Lua and Python were rearranged (issue 22), and
the web serves what it served: the same varied traffic (tests/store_traffic.py) through this
tree's package and through the package of commit BEFORE leaves every key under their prefixes
equal, value for value, and every view's answer equal, byte for byte."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import io
from pathlib import Path
from typing import Any, Iterator

import pytest

from releng_hardware.store.index import ORDER_DIGEST
from releng_hardware.store.machines import open_redis
from releng_hardware.views.derived import DIGEST_LENGTH
from tests.conftest import REDIS_URL, require_service, unique

# The commit before issue 22 (the subpackages, the split Lua): the stored bytes and answers are its.
BEFORE = "4dabb8d"
ROOT = Path(__file__).resolve().parents[2]
TRAFFIC = ROOT / "tests" / "store_traffic.py"


def package_before(into: Path) -> Path:
    """The package as it was at BEFORE, extracted under `into`."""
    try:
        archive = subprocess.run(["git", "archive", BEFORE, "releng_hardware"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no git history with commit {BEFORE}: {exc}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_traffic(prefix: str, pythonpath: Path | None) -> tuple[dict[str, Any], str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([sys.executable, str(TRAFFIC), REDIS_URL, prefix], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr.strip().splitlines()[-1]


@pytest.fixture
def prefixes() -> Iterator[tuple[str, str]]:
    require_service("Redis", "127.0.0.1", 6379)
    pair = unique("bytes-before") + ":", unique("bytes-after") + ":"
    yield pair
    client = open_redis(REDIS_URL)
    for prefix in pair:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def test_the_store_writes_the_bytes_the_commit_before_wrote(tmp_path, prefixes):
    before_tree = package_before(tmp_path)
    before_run, before_package = run_traffic(prefixes[0], before_tree)
    after_run, after_package = run_traffic(prefixes[1], None)
    before, after = before_run["keys"], after_run["keys"]
    # each run used the package it was meant to
    assert before_package.startswith(str(before_tree))
    assert after_package.startswith(str(ROOT))
    # the traffic reached every kind of key, so the comparison compares something
    kinds = {name.split(":", 1)[0] for name in after}
    assert {"machines", "machine_records", "machine_history", "label", "labels", "pending",
            "claimed", "index", "quarantine", "inventory", "taskcluster", "listener",
            "machine_order", "runs"} <= kinds
    assert sorted(before) == sorted(after)
    # index:state alone changed on purpose: its fingerprint now ends with the digest of the code
    # that made the index (views.derived), which a release over live data must not match
    kind, state, expires = after["index:state"]
    assert re.fullmatch(rf".*\|[0-9a-f]{{{DIGEST_LENGTH}}}", state), state
    after["index:state"] = [kind, state.rpartition("|")[0], expires]
    # and machine_order_state: the order is kept for the digest of the code that makes its members
    kind, state, expires = after["machine_order_state"]
    assert state == "done:" + ORDER_DIGEST, state
    after["machine_order_state"] = [kind, "done", expires]
    for name in before:
        assert _as_data(after[name]) == _as_data(before[name]), name
    # the answers: each view, every page of /machines, machines of every kind, errors
    answers = after_run["answers"]
    assert len(answers) > 40 and sorted(answers) == sorted(before_run["answers"])
    assert {status for status, _, _ in answers.values()} == {200, 400, 404, 409}
    for path, answer in before_run["answers"].items():
        assert answers[path] == answer, path


def _as_data(value: Any) -> Any:
    """A dumped value with each JSON object stored in it decoded: Lua's cjson writes a record's
    keys in its table's order, which the order the script set them in can change from one run
    to the next, so the same record may be stored with its keys in another order."""
    if isinstance(value, dict):
        return {key: _as_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_data(item) for item in value]
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
