"""The inventory through the web: never-seen machines, /machines/<id>, /summary and the page."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest

from releng_hardware.web.dashboard import needs_attention
from releng_hardware.views.fleet import never_seen_records
from releng_hardware.core.times import LASTSEEN_FORMAT
from tests.conftest import make_config, seen
from tests.unit.web.test_dashboard import page

LINUX = "gecko-t-linux-talos"
INVENTORY = {
    "mdc1:t-linux64-ms-100": LINUX,  # seen
    "mdc1:t-linux64-ms-102": LINUX,  # never seen
    "mdc2:t-mac-spare": None,  # never seen, no worker type
}


@pytest.fixture
def fleet(store):
    seen(store, "t-linux64-ms-100", ago=timedelta(minutes=5))
    seen(store, "t-linux64-ms-101", ago=timedelta(hours=7), task="BBBBBBBBQAGAAAAAAAAAAA")
    return store


def load(store, inventory=INVENTORY):
    store.update_inventory(lambda current: dict(inventory))


def ids(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    return [machine["id"] for machine in response.get_json()]


def test_machines_without_new_parameters_lists_only_seen_machines_in_the_same_shape(client, fleet):
    before = client.get("/machines").get_json()
    load(fleet)
    after = client.get("/machines").get_json()
    assert [m["id"] for m in after] == ["mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101"]
    assert [sorted(m) for m in after] == [sorted(m) for m in before]
    for machine in after:  # what existing clients do with every row
        datetime.strptime(machine["lastseen"], LASTSEEN_FORMAT)


def test_include_never_seen_adds_the_inventory_machines_never_seen(client, fleet):
    load(fleet)
    body = client.get("/machines?include=never_seen").get_json()
    assert [m["id"] for m in body] == ["mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101",
                                       "mdc1:t-linux64-ms-102", "mdc2:t-mac-spare"]
    never = {m["id"]: m for m in body if m["lastseen"] is None}
    assert never["mdc1:t-linux64-ms-102"] == {
        "id": "mdc1:t-linux64-ms-102", "machine": "t-linux64-ms-102", "datacenter": "mdc1",
        "lastseen": None, "age_seconds": None, "firstseen": None,
        "provisioner": "releng-hardware", "worker_type": LINUX, "last_task": None,
        "counts": {"completed": 0, "failed": 0, "exception": 0}, "stale": False,
        "idle_with_work_waiting": False, "problems": ["never_seen"], "quarantine": None,
        "source": None,
    }
    assert never["mdc2:t-mac-spare"]["worker_type"] is None


def test_without_an_inventory_include_never_seen_adds_nothing(client, fleet):
    assert ids(client.get("/machines?include=never_seen")) == ids(client.get("/machines"))


def test_never_seen_machines_take_the_filters_and_come_first_oldest_first(client, fleet):
    load(fleet)
    assert ids(client.get("/machines?include=never_seen&datacenter=mdc2")) == ["mdc2:t-mac-spare"]
    assert ids(client.get(f"/machines?include=never_seen&worker_type={LINUX}&datacenter=mdc1")) == [
        "mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101", "mdc1:t-linux64-ms-102"]
    # they have no age: age filters and last-task filters leave them out
    assert ids(client.get("/machines?include=never_seen&stale=6h")) == ["mdc1:t-linux64-ms-101"]
    assert ids(client.get("/machines?include=never_seen&state=completed")) == [
        "mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101"]
    assert ids(client.get("/machines?include=never_seen&sort=lastseen")) == [
        "mdc1:t-linux64-ms-102", "mdc2:t-mac-spare", "mdc1:t-linux64-ms-101", "mdc1:t-linux64-ms-100"]
    assert ids(client.get("/machines?include=never_seen&sort=-lastseen"))[-2:] == [
        "mdc2:t-mac-spare", "mdc1:t-linux64-ms-102"]


def test_include_takes_only_known_values(client, fleet):
    response = client.get("/machines?include=all")
    assert response.status_code == 400 and response.get_json()["parameter"] == "include"


def test_csv_shows_never_seen_machines_with_an_empty_lastseen(client, fleet):
    load(fleet)
    text = client.get("/machines?include=never_seen&format=csv&datacenter=mdc2").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["id"], row["lastseen"], row["age_seconds"]) for row in rows] == [
        ("mdc2:t-mac-spare", "", "")]


def test_loading_an_inventory_changes_the_etag(client, fleet):
    etag = client.get("/machines?include=never_seen").headers["ETag"]
    load(fleet)
    assert client.get("/machines?include=never_seen", headers={"If-None-Match": etag}).status_code == 200


def test_a_machine_never_seen_is_a_404_saying_whether_the_inventory_expects_it(client, fleet):
    load(fleet)
    for ref in ("mdc1:t-linux64-ms-102", "t-linux64-ms-102", "t-mac-spare"):
        response = client.get(f"/machines/{ref}")
        body = response.get_json()
        assert response.status_code == 404 and body["error"] == "not_found"
        assert body["in_inventory"] is True and "is in the inventory" in body["message"]
    for ref in ("mdc2:t-linux64-ms-102", "t-nowhere-1"):
        body = client.get(f"/machines/{ref}").get_json()
        assert body["in_inventory"] is False and body["status"] == 404


def test_summary_counts_expected_and_never_seen_while_total_stays_the_machines_seen(client, fleet):
    load(fleet)
    body = client.get("/summary").get_json()
    groups = {(g["datacenter"], g["provisioner"], g["worker_type"]): g for g in body["groups"]}
    linux = groups[("mdc1", "releng-hardware", LINUX)]
    assert (linux["total"], linux["expected"], linux["never_seen"]) == (2, 2, 1)
    spare = groups[("mdc2", "releng-hardware", None)]
    assert (spare["total"], spare["expected"], spare["never_seen"], spare["stale"]) == (0, 1, 1, 0)
    assert {name: body["totals"][name] for name in ("total", "expected", "never_seen")} == {
        "total": 2, "expected": 3, "never_seen": 2}


def test_summary_without_an_inventory_expects_nothing(client, fleet):
    totals = client.get("/summary").get_json()["totals"]
    assert (totals["total"], totals["expected"], totals["never_seen"]) == (2, 0, 0)


def test_with_several_provisioners_a_never_seen_machine_has_none(app_factory, fleet):
    load(fleet)
    client = app_factory(make_config(provisioner_ids=("releng-hardware", "other-hw"))).test_client()
    never = [m for m in client.get("/machines?include=never_seen").get_json() if m["lastseen"] is None]
    assert {m["provisioner"] for m in never} == {None}


def test_dashboard_shows_never_seen_machines_with_the_others_and_filters_them(client, fleet):
    load(fleet)
    shown = page(client)
    # machines missing from the fleet need attention, as stale ones do
    assert shown.section("attention") == ["mdc1:t-linux64-ms-101", "mdc1:t-linux64-ms-102",
                                          "mdc2:t-mac-spare"]
    assert shown.section("others") == ["mdc1:t-linux64-ms-100"]
    row = shown.row("mdc1:t-linux64-ms-102")
    assert "never-seen" in row["class"] and row["cells"][0] == "never seen" and row["cells"][4] == "never"
    assert page(client, "/?datacenter=mdc2").ids == ["mdc2:t-mac-spare"]
    assert "mdc2" in [value for value, _ in shown.options["datacenter"]]
    # "this view as JSON" is the /machines query that gives these rows
    assert 'href="/machines?datacenter=mdc2&amp;include=never_seen"' in client.get(
        "/?datacenter=mdc2").get_data(as_text=True)


@pytest.mark.parametrize("query", ["", "datacenter=mdc1", "sort=lastseen", "stale=6h",
                                   f"worker_type={LINUX}&sort=-machine"])
def test_dashboard_shows_what_machines_with_include_never_seen_returns(client, fleet, query):
    load(fleet)
    machines = client.get(f"/machines?include=never_seen&{query}").get_json()
    shown = page(client, f"/?{query}")
    assert shown.section("attention") == [m["id"] for m in machines if needs_attention(m)]
    assert shown.section("others") == [m["id"] for m in machines if not needs_attention(m)]


def test_dashboard_summary_has_inventory_columns_only_with_an_inventory(client, fleet):
    assert len(page(client).summary_rows[0]) == 10
    load(fleet)
    rows = {tuple(row[:2]): row for row in page(client).summary_rows}
    # datacenter, worker type, machines, expected, never seen, ...
    assert rows[("mdc1", LINUX)][2:5] == ["2", "2", "1"]
    assert rows[("mdc2", "—")][2:5] == ["0", "1", "1"]


def test_never_seen_records_are_the_inventory_minus_the_machines_seen():
    records = never_seen_records(INVENTORY, {"mdc1:t-linux64-ms-100"}, "releng-hardware")
    assert [(r.machine_id, r.lastseen, r.details["worker_type"]) for r in records] == [
        ("mdc1:t-linux64-ms-102", None, LINUX), ("mdc2:t-mac-spare", None, None)]
    assert never_seen_records({}, set(), None) == []


def test_a_worker_type_written_by_hand_into_redis_is_escaped_on_the_page(client, fleet):
    fleet.redis.hset(fleet.keys.inventory, "mdc1:t-hand-1", "<b>x</b>")
    assert client.get("/machines?include=never_seen").status_code == 200
    response = client.get("/")
    assert response.status_code == 200 and "<b>x</b>" not in response.get_data(as_text=True)


# -- the two problems ----------------------------------------------------------------

def problems_by_id(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return {machine["id"]: machine["problems"] for machine in response.get_json()}


def test_with_an_inventory_a_seen_machine_it_does_not_list_is_not_in_inventory(client, fleet):
    assert problems_by_id(client.get("/machines")) == {
        "mdc1:t-linux64-ms-100": [], "mdc1:t-linux64-ms-101": ["stale"]}
    load(fleet)
    assert problems_by_id(client.get("/machines")) == {
        "mdc1:t-linux64-ms-100": [], "mdc1:t-linux64-ms-101": ["not_in_inventory", "stale"]}
    assert client.get("/machines/mdc1:t-linux64-ms-101").get_json()["problems"] == [
        "not_in_inventory", "stale"]
    assert client.get("/machines/t-linux64-ms-100").get_json()["problems"] == []


def test_without_an_inventory_neither_inventory_problem_appears(client, fleet):
    load(fleet, {})
    for url in ("/machines?problem=any", "/machines?include=never_seen"):
        assert not {"never_seen", "not_in_inventory"} & {
            code for codes in problems_by_id(client.get(url)).values() for code in codes}
    assert client.get("/machines/mdc1:t-linux64-ms-101").get_json()["problems"] == ["stale"]


def test_problem_never_seen_lists_only_them_and_any_includes_them(client, fleet):
    load(fleet)
    assert problems_by_id(client.get("/machines?problem=never_seen")) == {
        "mdc1:t-linux64-ms-102": ["never_seen"], "mdc2:t-mac-spare": ["never_seen"]}
    assert list(problems_by_id(client.get("/machines?problem=any"))) == [
        "mdc1:t-linux64-ms-101", "mdc1:t-linux64-ms-102", "mdc2:t-mac-spare"]
    assert list(problems_by_id(client.get("/machines?problem=not_in_inventory"))) == [
        "mdc1:t-linux64-ms-101"]
    assert page(client, "/?problem=never_seen").ids == ["mdc1:t-linux64-ms-102", "mdc2:t-mac-spare"]


def test_csv_joins_the_inventory_problems_too(client, fleet):
    load(fleet)
    text = client.get("/machines?problem=any&format=csv").get_data(as_text=True)
    assert [(row["id"], row["problems"]) for row in csv.DictReader(io.StringIO(text))] == [
        ("mdc1:t-linux64-ms-101", "not_in_inventory stale"), ("mdc1:t-linux64-ms-102", "never_seen"),
        ("mdc2:t-mac-spare", "never_seen")]


def test_summary_problems_count_both_codes(client, fleet):
    load(fleet)
    totals = client.get("/summary").get_json()["totals"]["problems"]
    assert (totals["never_seen"], totals["not_in_inventory"], totals["stale"]) == (2, 1, 1)


def test_metric_counts_never_seen_and_not_in_inventory(client, fleet):
    load(fleet)
    text = client.get("/metrics").get_data(as_text=True)
    for code, datacenter, worker_type, count in (
            ("never_seen", "mdc1", LINUX, 1), ("never_seen", "mdc2", "", 1),
            ("not_in_inventory", "mdc1", LINUX, 1), ("not_in_inventory", "mdc2", "", 0)):
        assert (f'releng_hardware_machine_problems{{datacenter="{datacenter}",problem="{code}",'
                f'worker_type="{worker_type}"}} {count:.1f}') in text
    # the machines never seen have no age: the staleness families count only the machines seen
    assert 'releng_hardware_machines{datacenter="mdc2"' not in text


def test_loading_an_inventory_changes_the_etag_of_plain_machines_too(client, fleet):
    etag = client.get("/machines").headers["ETag"]
    load(fleet)
    assert client.get("/machines", headers={"If-None-Match": etag}).status_code == 200


@pytest.mark.parametrize("seen_, listed, expected", [
    (False, True, ["never_seen"]),
    (True, False, ["not_in_inventory"]),
    (True, True, []),
    (True, None, []),  # no inventory loaded
])
def test_inventory_rules(seen_, listed, expected):
    from releng_hardware.core.problems import MachineFacts, Thresholds, machine_problems
    facts = MachineFacts(None if not seen_ else 60.0, seen=seen_, in_inventory=listed)
    assert machine_problems(facts, datetime(2026, 11, 20), Thresholds()) == expected


def test_fields_with_never_seen_machines_take_the_full_path(client, fleet):
    load(fleet)
    poll = "fields=machine,datacenter,lastseen"
    assert client.get(f"/machines?{poll}&include=never_seen&datacenter=mdc2").get_json() == [
        {"machine": "t-mac-spare", "datacenter": "mdc2", "lastseen": None}]
    assert client.get(f"/machines?{poll}&problem=never_seen&sort=-machine").get_json() == [
        {"machine": "t-mac-spare", "datacenter": "mdc2", "lastseen": None},
        {"machine": "t-linux64-ms-102", "datacenter": "mdc1", "lastseen": None}]
    # the proof of concept's poll is unchanged: machines seen only
    assert [m["machine"] for m in client.get(f"/machines?{poll}").get_json()] == [
        "t-linux64-ms-100", "t-linux64-ms-101"]


def test_dashboard_never_seen_counts_link_to_the_machines_they_count(client, fleet):
    load(fleet)
    shown = page(client, "/?sort=lastseen")
    assert shown.links["never-seen"] == "/?problem=never_seen&sort=lastseen"
    assert page(client, shown.links["never-seen"]).ids == ["mdc1:t-linux64-ms-102", "mdc2:t-mac-spare"]
    html = client.get("/").get_data(as_text=True)
    assert 'href="/?datacenter=mdc2&amp;problem=never_seen" title="list them">1</a>' in html
