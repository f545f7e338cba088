"""The inventory tool on the real Redis: every format, every rule, bad input changing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from releng_hardware import cli
from releng_hardware.store.machines import Store, open_redis
from tests.conftest import NOW, REDIS_URL, ROOT, make_config, seen, wait_for
from tests.integration.test_processes import service_env

LINES = b"mdc1:t-linux-1 gecko-t-linux\nmdc1:t-linux-2 gecko-t-linux\nmdc2:t-mac-1\n"
EXPECTED = {"mdc1:t-linux-1": "gecko-t-linux", "mdc1:t-linux-2": "gecko-t-linux", "mdc2:t-mac-1": None}


@pytest.fixture
def tool(real_store: Store, redis_prefix: str) -> Any:
    """Run `releng-hardware-inventory ARGS` on the test's prefix of the real Redis."""
    def run(*args: str, input: bytes = b"") -> Any:
        return CliRunner().invoke(cli.inventory, list(args), input=input,
                                  env={"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": redis_prefix})
    return run


@pytest.fixture
def web(real_redis: Any, redis_prefix: str) -> Any:
    """The web app on the same Redis and prefix as the tool."""
    from releng_hardware.web.app import create_app
    app = create_app(make_config(redis_key_prefix=redis_prefix), redis=real_redis, clock=lambda: NOW)
    app.testing = True
    return app.test_client()


def served(web: Any) -> dict[str, str | None]:
    """The inventory as the web serves it: never-seen machine id -> worker type."""
    response = web.get("/machines?include=never_seen")
    assert response.status_code == 200
    expected = web.get("/summary").get_json()["totals"]["expected"]
    machines = {m["id"]: m["worker_type"] for m in response.get_json() if m["lastseen"] is None}
    assert expected == len(machines)
    return machines


def hosts(count: int, worker_type: str | None = "w") -> bytes:
    return "".join(f"mdc1:host-{n} {worker_type or ''}\n" for n in range(count)).encode()


@pytest.mark.parametrize("raw", [
    LINES,
    b"datacenter,machine,worker_type\nmdc1,t-linux-1,gecko-t-linux\nmdc1,t-linux-2,gecko-t-linux\nmdc2,t-mac-1,\n",
    json.dumps([{"machine": "t-linux-1", "datacenter": "mdc1", "worker_type": "gecko-t-linux"},
                {"machine": "t-linux-2", "datacenter": "mdc1", "worker_type": "gecko-t-linux"},
                {"machine": "t-mac-1", "datacenter": "mdc2", "worker_type": None}]).encode(),
], ids=["lines", "csv", "json"])
def test_each_format_loads_the_same_inventory(tool, real_store, web, raw):
    assert served(web) == {}
    result = tool("load", input=raw)
    assert result.exit_code == 0, result.output
    assert result.stdout == ("3 machines in the inventory after the load: 3 added, 0 removed, "
                             "0 unchanged, 0 changed worker type\n")
    assert real_store.inventory() == EXPECTED
    assert served(web) == EXPECTED


def test_the_web_flags_machines_missing_from_either_side(tool, real_store, web):
    seen(real_store, "t-linux-1", ago=timedelta(minutes=5), worker_type="gecko-t-linux")
    seen(real_store, "t-renamed-9", ago=timedelta(minutes=5), worker_type="gecko-t-linux")
    assert {m["id"]: m["problems"] for m in web.get("/machines?problem=any").get_json()} == {}
    tool("load", input=LINES)
    by_id = {m["id"]: m["problems"] for m in web.get("/machines?problem=any").get_json()}
    assert by_id == {"mdc1:t-linux-2": ["never_seen"], "mdc2:t-mac-1": ["never_seen"],
                     "mdc1:t-renamed-9": ["not_in_inventory"]}
    assert [m["id"] for m in web.get("/machines").get_json()] == ["mdc1:t-linux-1", "mdc1:t-renamed-9"]
    missing = web.get("/machines/mdc1:t-linux-2")
    assert missing.status_code == 404 and missing.get_json()["in_inventory"] is True
    totals = web.get("/summary").get_json()["totals"]
    assert (totals["total"], totals["expected"], totals["never_seen"]) == (2, 3, 2)


def test_show_then_load_changes_nothing(tool, real_store, web):
    tool("load", input=LINES)
    version = real_store.data_version()
    etag = web.get("/machines?include=never_seen").headers["ETag"]
    shown = tool("show")
    assert shown.exit_code == 0 and json.loads(shown.stdout)[2] == {
        "id": "mdc2:t-mac-1", "machine": "t-mac-1", "datacenter": "mdc2", "worker_type": None}
    again = tool("load", input=shown.stdout_bytes)
    assert again.stdout.startswith("3 machines in the inventory after the load: 0 added, 0 removed, "
                                   "3 unchanged, 0 changed worker type")
    assert real_store.inventory() == EXPECTED and real_store.data_version() == version
    assert web.get("/machines?include=never_seen", headers={"If-None-Match": etag}).status_code == 304


def test_show_without_an_inventory_prints_an_empty_array(tool):
    assert tool("show").stdout == "[]\n"


def test_replace_reports_each_kind_of_change_and_bumps_the_version(tool, real_store, web):
    tool("load", input=hosts(20))
    version = real_store.data_version()
    raw = hosts(20).replace(b"mdc1:host-0 w\n", b"").replace(b"mdc1:host-1 w", b"mdc1:host-1 v")
    result = tool("load", input=raw + b"mdc2:new-host\n")
    assert result.stdout.startswith("20 machines in the inventory after the load: 1 added, 1 removed, "
                                    "18 unchanged, 1 changed worker type")
    assert "mdc1:host-0" not in real_store.inventory() and real_store.inventory()["mdc1:host-1"] == "v"
    assert real_store.data_version() == version + 1
    assert served(web) == real_store.inventory() and len(served(web)) == 20


def test_merge_adds_without_removing(tool, real_store, web):
    tool("load", input=hosts(20))
    result = tool("load", "--merge", input=b"mdc2:new-host x\nmdc1:host-3 v\n")
    assert result.stdout.startswith("21 machines in the inventory after the load: 1 added, 0 removed, "
                                    "19 unchanged, 1 changed worker type")
    assert len(real_store.inventory()) == 21 and real_store.inventory()["mdc1:host-3"] == "v"
    assert served(web)["mdc2:new-host"] == "x" and len(served(web)) == 21


def test_dry_run_prints_the_change_and_writes_nothing(tool, real_store, web):
    tool("load", input=hosts(20))
    before = served(web)
    version = real_store.data_version()
    result = tool("load", "--dry-run", input=b"mdc2:new-host\n" + hosts(19))
    assert result.exit_code == 0
    assert result.stdout == ("20 machines in the inventory after the load: 1 added, 1 removed, "
                             "19 unchanged, 0 changed worker type (dry run: nothing written)\n")
    assert len(real_store.inventory()) == 20 and "mdc2:new-host" not in real_store.inventory()
    assert real_store.data_version() == version and served(web) == before


def test_replace_removing_more_than_a_tenth_needs_force(tool, real_store, web):
    tool("load", input=hosts(20))
    version = real_store.data_version()
    for args in ((), ("--dry-run",)):
        refused = tool("load", *args, input=hosts(17))
        assert refused.exit_code == 1 and refused.stdout == ""
        assert refused.stderr == ("releng-hardware: nothing written: this would remove 3 of the 20 "
                                  "machines in the inventory (more than a tenth); check the input, "
                                  "or pass --force if it is meant\n")
    assert len(real_store.inventory()) == 20 and real_store.data_version() == version
    assert len(served(web)) == 20
    forced = tool("load", "--force", input=hosts(17))
    assert forced.exit_code == 0 and len(real_store.inventory()) == 17 and len(served(web)) == 17


@pytest.mark.parametrize("raw", [b"", b"\n  \n", b"# only a comment\n", b"datacenter,machine\n"],
                         ids=["no-bytes", "blanks", "comments", "csv-header-only"])
def test_input_without_entries_is_refused_even_with_force(tool, real_store, web, raw):
    tool("load", input=LINES)
    result = tool("load", "--force", input=raw)
    assert result.exit_code == 1 and "only an explicit JSON [] empties the inventory" in result.stderr
    assert real_store.inventory() == EXPECTED and served(web) == EXPECTED


def test_only_an_explicit_empty_json_array_empties_the_inventory(tool, real_store, real_redis, web):
    tool("load", input=LINES)
    assert tool("load", input=b"[]").exit_code == 1
    result = tool("load", "--force", input=b"[]\n")
    assert result.exit_code == 0 and result.stdout.startswith(
        "0 machines in the inventory after the load: 0 added, 3 removed")
    assert real_store.inventory() == {} and not real_redis.exists(real_store.keys.inventory)
    assert served(web) == {}


@pytest.mark.parametrize("raw, where", [
    (LINES + b"mdc1:bad host name\n", "line 4: expected"),
    (LINES + b"mdc1:t-linux-1 other-type\n", "line 4: mdc1:t-linux-1 is already in the input (line 1)"),
    (b"datacenter,machine\nmdc1,ok\nmdc1,not ok\n", "line 3: machine 'not ok'"),
    (b'[{"machine": "a", "datacenter": "mdc1"}, {"machine": "b"}]', "entry 1: missing field 'datacenter'"),
    (b"<html>oops</html>", "line 1: unknown format"),
], ids=["lines", "duplicate", "csv", "json", "unknown-format"])
def test_bad_input_exits_1_with_one_line_naming_the_fault_and_changes_nothing(tool, real_store, web, raw,
                                                                             where):
    tool("load", input=hosts(5))
    version = real_store.data_version()
    before = web.get("/machines?include=never_seen")
    for args in ((), ("--merge",), ("--force",)):
        result = tool("load", *args, input=raw)
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr.startswith(f"releng-hardware: nothing written: {where}")
        assert result.stderr.count("\n") == 1
    assert len(real_store.inventory()) == 5 and real_store.data_version() == version
    assert web.get("/machines?include=never_seen").get_data() == before.get_data()


def test_module_and_console_script_run_as_processes(real_store, redis_prefix):
    env = service_env(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    loaded = subprocess.run([sys.executable, "-m", "releng_hardware.cli", "inventory", "load"], cwd=ROOT,
                            env=env, input=LINES, capture_output=True, timeout=30)
    assert loaded.returncode == 0, loaded.stderr
    shown = subprocess.run(["releng-hardware-inventory", "show"], env=env, capture_output=True, timeout=30)
    assert json.loads(shown.stdout) == [
        {"id": key, "machine": key.split(":")[1], "datacenter": key.split(":")[0], "worker_type": worker_type}
        for key, worker_type in sorted(EXPECTED.items())]
    bad = subprocess.run(["releng-hardware-inventory", "load"], env=env, input=b"mdc1:a\nnope\n",
                         capture_output=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.decode().count("\n") == 1 and b"line 2" in bad.stderr


def test_redis_down_fails_clearly():
    env = service_env(REDIS_URL="redis://127.0.0.1:1/0", REDIS_TIMEOUT="1s")
    result = subprocess.run([sys.executable, "-m", "releng_hardware.cli", "inventory", "load"], cwd=ROOT,
                            env=env, input=LINES, capture_output=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.decode().startswith(
        "releng-hardware: Redis at redis://127.0.0.1:1/0 failed during the load: ")


def test_readers_never_see_half_an_inventory(real_store, redis_prefix):
    first = {f"mdc1:first-{n}": "w" for n in range(20000)}
    second = {f"mdc2:second-{n}": None for n in range(15000)}
    reader = Store(open_redis(REDIS_URL), redis_prefix)
    seen_sizes: list[int] = []
    torn: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            current = reader.inventory()
            seen_sizes.append(len(current))
            if current not in ({}, first, second):
                torn.append(len(current))
    thread = threading.Thread(target=read)
    thread.start()
    try:
        for round_ in range(6):
            wanted = first if round_ % 2 == 0 else second
            real_store.update_inventory(lambda current, wanted=wanted: wanted, chunk=1000)
            # the reader is mid-read when the next load starts: reads and writes overlap
            wait_for(lambda wanted=wanted: seen_sizes and seen_sizes[-1] == len(wanted), 10, "the reader is stuck")
    finally:
        done.set()
        thread.join()
    assert torn == []
