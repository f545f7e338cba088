"""A paged /machines (limit, cursor): walking every page gives the unpaged answer, in its order."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from releng_hardware.views import reads
from releng_hardware.views.fleet import MachineQuery
from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.core.params import LIMIT, MAX_LIMIT, CURSOR, cursor_param, encode_cursor
from releng_hardware.core.records import BackfillItem, Quarantine
from releng_hardware.store.index import ORDER_DIGEST
from releng_hardware.store.keys import order_member, order_member_id
from releng_hardware.store.machines import Store
from releng_hardware.core.times import format_lastseen
from tests.conftest import DEADLINE, NOW

# Datacenters one of which is a prefix of another, and hostnames shared between them: the
# order is hostname then datacenter, not the id's.
DATACENTERS = ("mdc1", "mdc1-b", "md", "mdc2")
WORKER_TYPES = ("gecko-t-linux-talos", "gecko-t-win10-64-hw")
STATES = (("completed", "completed"), ("failed", "failed"), ("exception", "worker-shutdown"),
          ("running", None))


def random_fleet(store: Store, rng: random.Random, machines: int = 60) -> list[str]:
    """Random traffic, a preload, a backfill, quarantines, an inventory and a retention sweep."""
    ids = [f"{rng.choice(DATACENTERS)}:t-{rng.choice(('a', 'ab', 'a-b', 'b'))}-{rng.randrange(30)}"
           for _ in range(machines)]
    events: list[WorkerEvent | PendingEvent] = []
    for number, machine_id in enumerate(ids):
        datacenter, host = machine_id.split(":")
        state, reason = rng.choice(STATES)
        events.append(WorkerEvent(datacenter, host, "releng-hardware", rng.choice(WORKER_TYPES),
                                  f"{number:04d}AAAAQAGAAAAAAAAAAA"[:22], 0, state, reason,
                                  NOW - timedelta(hours=rng.uniform(0, 24 * 40)), DEADLINE, True))
    events.append(PendingEvent("releng-hardware", WORKER_TYPES[0], "EEEEEEEEQAGAAAAAAAAAAA", 0,
                               NOW, DEADLINE))
    for start in range(0, len(events), 7):
        store.record(events[start:start + 7], now=NOW)
    store.preload({f"mdc2:t-pre-{n}": NOW - timedelta(hours=n) for n in range(5)})
    store.backfill([BackfillItem("md:t-a-1", NOW - timedelta(minutes=40), None, "releng-hardware",
                                 WORKER_TYPES[1])])
    store.set_quarantine(ids[0], Quarantine(format_lastseen(NOW + timedelta(days=1)), "disk", None,
                                            "releng-hardware/" + WORKER_TYPES[0]))
    store.set_quarantine(ids[1], Quarantine(format_lastseen(NOW - timedelta(days=1)), None, None, ""))
    store.update_inventory(lambda current: {ids[2]: WORKER_TYPES[0], "mdc1:t-never-1": None,
                                            "mdc2:t-a-never": WORKER_TYPES[1]})
    while not store.remove_expired(NOW - timedelta(days=30), count=5).wrapped:
        pass
    return ids


def walk(client: Any, query: dict[str, str], limit: int) -> tuple[list[Any], int]:
    """Every page of the query, following X-Next-Cursor: (the machines or CSV rows, pages)."""
    shown: list[Any] = []
    cursor, pages = None, 0
    while True:
        args = {**query, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = client.get(f"/machines?{urlencode(args)}")
        assert response.status_code == 200, response.get_data(as_text=True)
        pages += 1
        if query.get("format") == "csv":
            shown += response.get_data(as_text=True).split("\r\n")[1:-1]
        else:
            shown += response.get_json()
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in response.headers
            return shown, pages
        assert response.headers["Link"].endswith('; rel="next"') and cursor in response.headers["Link"]
        assert pages < 500


def unpaged(client: Any, query: dict[str, str]) -> list[Any]:
    response = client.get(f"/machines?{urlencode(query)}")
    assert response.status_code == 200
    if query.get("format") == "csv":
        return response.get_data(as_text=True).split("\r\n")[1:-1]
    return response.get_json()


QUERIES = [
    {}, {"sort": "-machine"}, {"datacenter": "mdc1"}, {"problem": "stale"}, {"state": "failed"},
    {"stale": "6h", "sort": "-machine"}, {"seen_within": "3d"}, {"quarantined": "true"},
    {"worker_type": WORKER_TYPES[1], "fields": "id,lastseen,problems"},
    {"fields": "machine,datacenter,lastseen"}, {"format": "csv"},
    # read from the whole fleet, cut the same way
    {"sort": "lastseen"}, {"sort": "-lastseen", "datacenter": "mdc2"}, {"include": "never_seen"},
    {"problem": "any", "sort": "-machine"},
]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("query", QUERIES, ids=lambda query: urlencode(query) or "all")
def test_walking_every_page_gives_the_unpaged_answer(store, client, monkeypatch, seed, query):
    random_fleet(store, random.Random(seed))
    # small budgets, so that filtered pages end early and chunks follow each other
    monkeypatch.setattr(reads, "SCAN_BUDGET", 9)
    monkeypatch.setattr(reads, "FILTERED_CHUNK", 4)
    expected = unpaged(client, query)
    assert expected, "the query selects some machines"
    for limit in (1, 3, 1000):
        shown, pages = walk(client, query, limit)
        assert shown == expected
        assert pages >= len(expected) / limit


def test_a_filtered_page_may_hold_fewer_than_its_limit_and_still_go_on(store, client, monkeypatch):
    random_fleet(store, random.Random(4))
    monkeypatch.setattr(reads, "SCAN_BUDGET", 5)
    monkeypatch.setattr(reads, "FILTERED_CHUNK", 5)
    response = client.get("/machines?limit=5&state=failed")
    everything = unpaged(client, {"state": "failed"})
    assert len(response.get_json()) < 5 < len(everything)
    assert "X-Next-Cursor" in response.headers


def test_a_page_reads_only_the_machines_it_examines(store, config):
    random_fleet(store, random.Random(5))
    page_sizes: list[int] = []
    real_page = store.machine_order_page

    def counted(*args: Any, **kwargs: Any) -> Any:
        page = real_page(*args, **kwargs)
        page_sizes.append(len(page.entries))
        return page
    store.machine_order_page = counted  # type: ignore[method-assign]
    store.machines = lambda: pytest.fail("a page in machine order read the whole fleet")  # type: ignore[method-assign]
    page = reads.read_page(store, config, NOW, MachineQuery(), 4, None)
    assert len(page.machines) == 4 and page_sizes == [4] and page.next_place is not None


def test_a_machine_added_mid_walk_appears_at_most_once(store, client):
    random_fleet(store, random.Random(6))
    first = client.get("/machines?limit=10")
    cursor = first.headers["X-Next-Cursor"]
    behind = first.get_json()[0]  # added again before the cursor: not shown again
    ahead_host = "t-zz-new"
    store.record([WorkerEvent(behind["datacenter"], behind["machine"], "releng-hardware",
                              WORKER_TYPES[0], "ZZZZZZZZQAGAAAAAAAAAAA", 1, "completed",
                              "completed", NOW, DEADLINE, True),
                  WorkerEvent("mdc1", ahead_host, "releng-hardware", WORKER_TYPES[0],
                              "YYYYYYYYQAGAAAAAAAAAAA", 0, "completed", "completed", NOW,
                              DEADLINE, True),
                  WorkerEvent("mdc1", "t-0-behind", "releng-hardware", WORKER_TYPES[0],
                              "XXXXXXXXQAGAAAAAAAAAAA", 0, "completed", "completed", NOW,
                              DEADLINE, True)], now=NOW)
    rest, _ = walk_from(client, cursor)
    ids = [machine["id"] for machine in first.get_json() + rest]
    assert len(ids) == len(set(ids))
    assert f"mdc1:{ahead_host}" in ids and "mdc1:t-0-behind" not in ids


def walk_from(client: Any, cursor: str) -> tuple[list[Any], int]:
    shown: list[Any] = []
    pages = 0
    while cursor:
        response = client.get(f"/machines?limit=10&cursor={cursor}")
        shown += response.get_json()
        pages += 1
        cursor = response.headers.get("X-Next-Cursor")
    return shown, pages


def test_machines_written_before_the_order_existed_page_correctly(store, client):
    random_fleet(store, random.Random(7))
    expected = unpaged(client, {})
    # an upgraded deployment: the data without the order, then one new machine recorded
    store.redis.delete(store.keys.machine_order, store.keys.machine_order_state)
    store.record([WorkerEvent("mdc1", "t-after-upgrade", "releng-hardware", WORKER_TYPES[0],
                              "WWWWWWWWQAGAAAAAAAAAAA", 0, "completed", "completed", NOW,
                              DEADLINE, True)], now=NOW)
    assert store.redis.zcard(store.keys.machine_order) == 1
    shown, _ = walk(client, {}, 7)
    assert shown == unpaged(client, {}) and len(shown) == len(expected) + 1
    assert store.redis.get(store.keys.machine_order_state) == "done:" + ORDER_DIGEST


def test_the_order_building_steps_are_bounded_and_idempotent(store):
    random_fleet(store, random.Random(8))
    members = store.redis.zrange(store.keys.machine_order, 0, -1)
    store.redis.delete(store.keys.machine_order, store.keys.machine_order_state)
    store.build_machine_order(step=3)
    store.build_machine_order(step=3)
    assert store.redis.zrange(store.keys.machine_order, 0, -1) == members
    assert sorted(map(order_member_id, members)) == sorted(store.lastseen_by_machine())


def test_the_order_follows_every_write_that_adds_or_removes_a_machine(store):
    random_fleet(store, random.Random(9))
    ids = set(store.lastseen_by_machine())
    assert {order_member_id(member) for member in store.redis.zrange(
        store.keys.machine_order, 0, -1)} == ids
    assert order_member("mdc1:t-a") < order_member("mdc1-b:t-a") < order_member("md:t-a-b")


@pytest.mark.parametrize("query, parameter", [
    ("limit=0", "limit"), ("limit=5001", "limit"), ("limit=05", "limit"), ("limit=", "limit"),
    ("limit=2&cursor=", "cursor"), ("limit=2&cursor=2AAAA", "cursor"), ("cursor=1A", "cursor"),
    ("limit=2&cursor=1AA!A", "cursor"), ("limit=2&cursor=" + "1" + "A" * 300, "cursor"),
])
def test_a_bad_limit_or_cursor_is_a_400_naming_it(client, query, parameter):
    response = client.get(f"/machines?{query}")
    assert response.status_code == 400
    assert response.get_json() == {"error": "bad_parameter", "status": 400, "parameter": parameter,
                                   "message": response.get_json()["message"]}
    assert response.get_json()["message"].startswith(f"{parameter}: ")


def test_a_cursor_without_a_limit_pages_by_the_default(store, client):
    random_fleet(store, random.Random(10))
    first = unpaged(client, {})[0]
    response = client.get(f"/machines?cursor={encode_cursor(order_member(first['id']))}")
    assert response.get_json() == unpaged(client, {})[1:]
    assert "X-Next-Cursor" not in response.headers


def test_the_limit_pattern_is_the_numbers_from_one_to_the_most():
    accepted = [number for number in range(0, MAX_LIMIT + 100) if LIMIT.fullmatch(str(number))]
    assert accepted == list(range(1, MAX_LIMIT + 1))


def test_every_cursor_of_the_pattern_decodes_and_encoding_round_trips():
    rng = random.Random(11)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for length in range(0, 40):
        text = "1" + "".join(rng.choice(alphabet) for _ in range(length))
        if CURSOR.fullmatch(text):
            cursor_param("cursor", text)
    place = order_member("mdc1:t-linux64-ms-100")
    assert cursor_param("cursor", encode_cursor(place)) == place.encode()


def test_without_limit_the_answer_has_no_page_headers(store, client):
    random_fleet(store, random.Random(12))
    response = client.get("/machines")
    assert "X-Next-Cursor" not in response.headers and "Link" not in response.headers
