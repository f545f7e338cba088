"""Inventory: the three input formats, validation, the load rules and the store's atomic replace."""

from __future__ import annotations

import json

import fakeredis
import orjson
import pytest
import redis

from releng_hardware.tools.inventory import (InventoryError, inventory_json, parse_inventory,
                                       plan_load)
from releng_hardware.store.machines import WATCH_ATTEMPTS, Store

EXPECTED = {"mdc1:t-linux-1": "gecko-t-linux", "mdc2:t-mac-1": None}


def test_json_in_the_machines_shape_ignores_other_fields():
    raw = json.dumps([
        {"id": "mdc1:t-linux-1", "machine": "t-linux-1", "datacenter": "mdc1",
         "worker_type": "gecko-t-linux", "lastseen": "2026-11-20T08:00:00.000000",
         "last_task": {"task_id": "x"}},
        {"machine": "t-mac-1", "datacenter": "mdc2", "worker_type": None},
    ]).encode()
    assert parse_inventory(raw) == EXPECTED


def test_json_without_worker_type_means_none():
    assert parse_inventory(b'[{"machine": "t-mac-1", "datacenter": "mdc2"}]') == {"mdc2:t-mac-1": None}


def test_explicit_empty_json_array_is_an_empty_inventory():
    assert parse_inventory(b" [ ]\n") == {}


def test_csv_with_header_in_any_column_order_and_extra_columns():
    raw = (b"machine,notes,datacenter,worker_type\r\n"
           b"t-linux-1,rack 4,mdc1,gecko-t-linux\r\n"
           b"\r\n"
           b"t-mac-1,,mdc2,\r\n")
    assert parse_inventory(raw) == EXPECTED


def test_csv_without_worker_type_column():
    assert parse_inventory(b"datacenter,machine\nmdc2,t-mac-1\n") == {"mdc2:t-mac-1": None}


def test_csv_export_of_machines_loads():
    from releng_hardware.views.fleet import CSV_COLUMNS
    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(id="mdc1:t-linux-1", datacenter="mdc1", machine="t-linux-1",
               worker_type="gecko-t-linux")
    raw = (",".join(CSV_COLUMNS) + "\n" + ",".join(row.values()) + "\n").encode()
    assert parse_inventory(raw) == {"mdc1:t-linux-1": "gecko-t-linux"}


def test_plain_lines_with_blanks_comments_and_a_byte_order_mark():
    raw = ("\ufeff# the Linux pool\n"
           "mdc1:t-linux-1   gecko-t-linux   # rack 4\n"
           "\n"
           "   \n"
           "  mdc2:t-mac-1\n").encode()
    assert parse_inventory(raw) == EXPECTED


def test_a_comment_with_a_comma_on_the_first_line_is_still_plain_lines():
    assert parse_inventory(b"mdc1:a w   # rack 4, row 2\nmdc1:b\n") == {"mdc1:a": "w", "mdc1:b": None}


def test_the_same_machine_twice_with_the_same_worker_type_is_one_entry():
    assert parse_inventory(b"mdc1:a w\nmdc1:a w\n") == {"mdc1:a": "w"}


@pytest.mark.parametrize("raw, problem", [
    (b"", "input is empty: only an explicit JSON [] empties the inventory"),
    (b" \n\t\n", "input is empty"),
    (b"# nothing here\n\n# still nothing\n", "input has only blank lines and comments"),
    (b"datacenter,machine,worker_type\n", "input has no entries"),
    (b"\xff\xfe", "input is not UTF-8 text"),
    (b'[{"machine": "a", "datacenter": "mdc1"}', "input is not valid JSON"),
    (b'{"machine": "a", "datacenter": "mdc1"}', "expected a JSON array of machines, got a JSON object"),
    (b'[{"machine": "a", "datacenter": "mdc1"}, "mdc1:b"]', "entry 1: expected an object, got a JSON string"),
    (b'[{"machine": "a"}]', "entry 0: missing field 'datacenter'"),
    (b'[{"datacenter": "mdc1"}]', "entry 0: missing field 'machine'"),
    (b'[{"machine": "a b", "datacenter": "mdc1"}]', "entry 0: machine 'a b' is not a Taskcluster identifier"),
    (b'[{"machine": "a", "datacenter": 7}]', "entry 0: datacenter 7 is not a Taskcluster identifier"),
    (b'[{"machine": "a", "datacenter": "mdc1", "worker_type": ""}]', "entry 0: worker_type '' is not"),
    (b'[{"machine": "a", "datacenter": "mdc1", "worker_type": "w"},'
     b' {"machine": "a", "datacenter": "mdc1", "worker_type": "v"}]',
     "entry 1: mdc1:a is already in the input (entry 0) with worker type 'w', here 'v'"),
    (b'[{"machine": "a", "datacenter": "mdc1", "worker_type": "w"},'
     b' {"machine": "a", "datacenter": "mdc1", "worker_type": null}]',
     "entry 1: mdc1:a is already in the input (entry 0) with worker type 'w', here None"),
    (b"machine,worker_type\na,w\n", "line 1: the CSV header names no 'datacenter' column"),
    (b"datacenter,machine,machine\nmdc1,a,b\n", "line 1: the CSV header names 'machine' twice"),
    (b"datacenter,machine\nmdc1,a\nmdc1\n", "line 3: 1 fields, the header has 2"),
    (b"datacenter,machine\nmdc1,a\nmdc1,x" + b"y" * 40 + b"\n", "line 3: machine 'xyyyy"),
    (b'datacenter,machine\nmdc1,"a\n', "line 2: not valid CSV: unexpected end of data"),
    (b'datacenter,machine\nmdc1,"a"b\n', "line 2: not valid CSV"),
    (b"datacenter,machine,worker_type\nmdc1,a,w\n# c\nmdc1,a,v\n",
     "line 4: mdc1:a is already in the input (line 2) with worker type 'w', here 'v'"),
    (b"mdc1:a\nmdc1:b w extra\n", "line 2: expected 'datacenter:hostname [worker_type]', got 'mdc1:b w extra'"),
    (b"mdc1:a\nmdc1-b\n", "line 2: expected 'datacenter:hostname [worker_type]'"),
    (b"mdc1:a\n:b\n", "line 2: datacenter '' is not a Taskcluster identifier"),
    (b"mdc1:a\nmdc1:b:c\n", "line 2: machine 'b:c' is not a Taskcluster identifier"),
    (b"mdc1:a\nmdc1:b w\xc3\xa9\n", "line 2: worker_type 'w\u00e9' is not"),
    (b"\n# hosts\nmdc1:a w\nmdc1:a\n", "line 4: mdc1:a is already in the input (line 3) with worker type 'w', here None"),
    (b"<html><body>502 Bad Gateway</body></html>\n", "line 1: unknown format '<html><body>502 Bad Gateway</body></html>'"),
    (b"datacenter machine worker_type\nmdc1 a w\n", "line 1: unknown format"),
])
def test_bad_input_names_the_entry_or_line_and_the_problem_in_one_line(raw, problem):
    with pytest.raises(InventoryError) as raised:
        parse_inventory(raw)
    assert problem in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_hostile_value_is_shown_escaped_and_short():
    raw = json.dumps([{"machine": "x\n" + "y" * 500, "datacenter": "mdc1"}]).encode()
    with pytest.raises(InventoryError) as raised:
        parse_inventory(raw)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 200 and "'x\\nyyy" in message


CURRENT = {f"mdc1:m{n}": "w" for n in range(20)}


def test_replace_counts_added_removed_unchanged_and_changed_worker_type():
    loaded = {**{f"mdc1:m{n}": "w" for n in range(2, 19)}, "mdc1:m19": "v", "mdc2:new": None}
    change = plan_load(CURRENT, loaded, merge=False, force=False)
    assert change.after == loaded
    assert (change.added, change.removed, change.unchanged, change.changed_worker_type) == (1, 2, 17, 1)
    assert change.summary() == ("19 machines in the inventory after the load: 1 added, 2 removed, "
                                "17 unchanged, 1 changed worker type")


def test_merge_adds_and_updates_but_never_removes():
    change = plan_load(CURRENT, {"mdc1:m0": "v", "mdc2:new": None}, merge=True, force=False)
    assert change.after == {**CURRENT, "mdc1:m0": "v", "mdc2:new": None}
    assert (change.added, change.removed, change.unchanged, change.changed_worker_type) == (1, 0, 19, 1)


def test_replace_may_remove_a_tenth_but_not_more():
    ninety_percent = {key: "w" for key in list(CURRENT)[2:]}
    assert plan_load(CURRENT, ninety_percent, merge=False, force=False).removed == 2
    with pytest.raises(InventoryError, match="would remove 3 of the 20 machines"):
        plan_load(CURRENT, {key: "w" for key in list(CURRENT)[3:]}, merge=False, force=False)


def test_force_allows_a_replace_that_removes_everything():
    change = plan_load(CURRENT, {}, merge=False, force=True)
    assert change.after == {} and change.removed == 20


def test_the_removal_guard_does_not_apply_to_a_merge_or_a_first_load():
    assert plan_load({}, {"mdc1:a": None}, merge=False, force=False).added == 1
    assert plan_load(CURRENT, {}, merge=True, force=False).after == CURRENT


def test_show_output_loads_back_to_the_same_inventory():
    shown = inventory_json(EXPECTED)
    assert orjson.loads(shown) == [
        {"id": "mdc1:t-linux-1", "machine": "t-linux-1", "datacenter": "mdc1",
         "worker_type": "gecko-t-linux"},
        {"id": "mdc2:t-mac-1", "machine": "t-mac-1", "datacenter": "mdc2", "worker_type": None},
    ]
    assert parse_inventory(shown) == EXPECTED
    assert parse_inventory(inventory_json({})) == {}


# -- the store ------------------------------------------------------------------------

def test_store_replaces_the_whole_inventory_and_bumps_the_data_version(store: Store):
    store.update_inventory(lambda current: {"mdc1:a": "w", "mdc1:b": None})
    version = store.data_version()
    store.update_inventory(lambda current: {"mdc1:c": None})
    assert store.inventory() == {"mdc1:c": None}
    assert store.data_version() == version + 1


def test_store_writes_nothing_for_none_or_the_same_inventory(store: Store):
    store.update_inventory(lambda current: {"mdc1:a": "w"})
    version = store.data_version()
    store.update_inventory(lambda current: None)
    store.update_inventory(lambda current: dict(current))
    assert store.inventory() == {"mdc1:a": "w"} and store.data_version() == version


def test_store_decide_sees_the_current_inventory_and_a_refusal_writes_nothing(store: Store):
    store.update_inventory(lambda current: {"mdc1:a": None})
    seen = []

    def refuse(current):
        seen.append(current)
        raise InventoryError("no")
    with pytest.raises(InventoryError):
        store.update_inventory(refuse)
    assert seen == [{"mdc1:a": None}] and store.inventory() == {"mdc1:a": None}


def test_store_empty_inventory_means_none_loaded(store: Store, fake_redis):
    store.update_inventory(lambda current: {"mdc1:a": None})
    store.update_inventory(lambda current: {})
    assert store.inventory() == {} and not fake_redis.exists("inventory")


def test_store_inventory_key_is_behind_the_prefix(fake_redis):
    Store(fake_redis, "one:").update_inventory(lambda current: {"mdc1:a": None})
    assert Store(fake_redis, "two:").inventory() == {}
    assert fake_redis.hgetall("one:inventory") == {"mdc1:a": ""}


def test_store_decides_again_when_another_load_lands_between_read_and_write(store: Store, fake_server):
    other = Store(fakeredis.FakeRedis(server=fake_server, decode_responses=True))
    seen = []

    def decide(current):
        seen.append(dict(current))
        if len(seen) == 1:
            other.update_inventory(lambda _: {"mdc1:other": None})
        return {**current, "mdc1:mine": None}
    store.update_inventory(decide)
    assert seen == [{}, {"mdc1:other": None}]
    assert store.inventory() == {"mdc1:other": None, "mdc1:mine": None}


def test_store_gives_up_when_the_inventory_keeps_changing_under_the_load(store: Store, fake_server):
    other = Store(fakeredis.FakeRedis(server=fake_server, decode_responses=True))
    calls = []

    def decide(current):
        calls.append(len(calls))
        other.update_inventory(lambda _: {f"mdc1:other-{len(calls)}": None})
        return {"mdc1:mine": None}
    with pytest.raises(redis.WatchError):
        store.update_inventory(decide)
    assert len(calls) == WATCH_ATTEMPTS
    assert store.inventory() == {f"mdc1:other-{WATCH_ATTEMPTS}": None}
