"""`/machines?fields=...`: only the fields asked, in JSON and CSV, the same machines as without."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from releng_hardware.views.fleet import MACHINE_FIELDS
from tests.conftest import NOW, seen

POLL = "machine,datacenter,lastseen"


@pytest.fixture
def fleet(store):
    """Hostnames in two datacenters, a stale machine, a preloaded one and a legacy lastseen."""
    seen(store, "t-linux64-ms-100", ago=timedelta(minutes=5), task="AAAAAAAAQAGAAAAAAAAAAA")
    seen(store, "t-linux64-ms-101", ago=timedelta(hours=7), task="BBBBBBBBQAGAAAAAAAAAAA",
         state="exception")
    seen(store, "t-w1064-ms-281", dc="mdc2", ago=timedelta(hours=2),
         worker_type="gecko-t-win10-64-hw", task="CCCCCCCCQAGAAAAAAAAAAA", state="failed")
    seen(store, "t-linux64-ms-100", dc="mdc2", ago=timedelta(days=3), task="DDDDDDDDQAGAAAAAAAAAAA")
    store.preload({"mdc3:t-mac-ms-001": NOW - timedelta(hours=1)})
    store.redis.hset("machines", "mdc3:t-legacy-1", "2018-11-08T08:47:50")
    return store


def test_fields_returns_only_those_fields_in_the_order_asked(client, fleet):
    body = client.get("/machines?fields=lastseen,id").get_json()
    assert [list(machine) for machine in body] == [["lastseen", "id"]] * 6
    assert body[0] == {"lastseen": "2018-11-08T08:47:50.000000", "id": "mdc3:t-legacy-1"}
    nested = client.get("/machines?fields=id,last_task,counts&datacenter=mdc2").get_json()
    assert nested[0]["last_task"]["task_id"] == "DDDDDDDDQAGAAAAAAAAAAA"
    assert nested[1]["counts"] == {"completed": 0, "failed": 1, "exception": 0}


@pytest.mark.parametrize("query", [
    "", "&sort=-machine", "&sort=lastseen", "&sort=-lastseen", "&datacenter=mdc2",
    "&stale=6h", "&seen_within=3h", "&stale=1h&seen_within=3d&sort=-lastseen",
    "&worker_type=gecko-t-linux-talos", "&state=failed", "&provisioner=releng-hardware",
])
@pytest.mark.parametrize("fields", [POLL, "datacenter,machine,lastseen", "lastseen,id", "id,age_seconds",
                                    "lastseen,stale", "machine,counts"])
def test_fields_select_the_same_machines_in_the_same_order_as_the_full_answer(client, fleet,
                                                                              query, fields):
    names = fields.split(",")
    full = client.get(f"/machines?{query.lstrip('&')}").get_json()
    sparse = client.get(f"/machines?fields={fields}{query}").get_json()
    assert sparse == [{name: machine[name] for name in names} for machine in full]


def test_the_three_field_poll_reads_no_machine_records(client, fleet, monkeypatch):
    # the pollers' request must not build full machine objects only to throw them away
    from releng_hardware.store.machines import Store

    def refuse(*_args, **_kwargs):
        raise AssertionError("read every machine record")
    monkeypatch.setattr(Store, "machines", refuse)
    body = client.get(f"/machines?fields={POLL}").get_json()
    assert body[:2] == [
        {"machine": "t-legacy-1", "datacenter": "mdc3", "lastseen": "2018-11-08T08:47:50.000000"},
        {"machine": "t-linux64-ms-100", "datacenter": "mdc1",
         "lastseen": "2026-11-20T14:55:00.000000"},
    ]
    assert [m["datacenter"] for m in body[1:3]] == ["mdc1", "mdc2"]  # same hostname: by datacenter
    # a field from the records does read them (the app turns the refusal into a 500)
    assert client.get("/machines?fields=machine,worker_type").status_code == 500


def test_fields_shape_the_csv_columns(client, fleet):
    text = client.get(f"/machines?format=csv&fields={POLL}&datacenter=mdc1").get_data(as_text=True)
    assert text.split("\r\n")[:2] == ["machine,datacenter,lastseen",
                                      "t-linux64-ms-100,mdc1,2026-11-20T14:55:00.000000"]
    rows = list(csv.DictReader(io.StringIO(client.get(
        "/machines?format=csv&fields=id,last_task,counts,stale&datacenter=mdc2").get_data(as_text=True))))
    assert list(rows[0]) == ["id", "last_task_task_id", "last_task_run_id", "last_task_state",
                             "last_task_reason_resolved", "last_task_url", "completed", "failed",
                             "exception", "stale"]
    assert (rows[1]["id"], rows[1]["last_task_state"], rows[1]["failed"]) == (
        "mdc2:t-w1064-ms-281", "failed", "1")


def test_every_field_can_be_asked_and_repeats_count_once(client, fleet):
    every = client.get("/machines?fields=" + ",".join(MACHINE_FIELDS)).get_json()
    assert every == client.get("/machines").get_json()
    assert client.get("/machines?fields=id,%20id").get_json()[0] == {"id": "mdc3:t-legacy-1"}


@pytest.mark.parametrize("value", ["colour", "id,colour", "", "id,,machine", "ID"])
def test_an_unknown_field_is_a_400_naming_the_parameter(client, fleet, value):
    response = client.get(f"/machines?fields={value}")
    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["parameter"]) == ("bad_parameter", "fields")
    assert "lastseen" in body["message"]  # it lists the fields there are


def test_the_poll_answers_304_until_the_data_changes(client, fleet, app_factory):
    url = f"/machines?fields={POLL}"
    etag = client.get(url).headers["ETag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    # ages grow, the answer does not change
    later = app_factory(now=NOW + timedelta(days=2)).test_client()
    assert later.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url + "&sort=lastseen", headers={"If-None-Match": etag}).status_code == 200
    seen(fleet, "t-new-1", ago=timedelta(minutes=1), task="ZZZZZZZZQAGAAAAAAAAAAA")
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 200


def test_a_time_filter_changes_the_etag_when_time_changes_the_selection(fleet, app_factory):
    url = f"/machines?fields={POLL}&stale=3h&seen_within=4h"
    first = app_factory(now=NOW + timedelta(hours=1.5)).test_client().get(url)
    assert [m["machine"] for m in first.get_json()] == ["t-w1064-ms-281"]
    # an hour later as many machines, but another one: the count alone would not see it
    later = app_factory(now=NOW + timedelta(hours=2.5)).test_client()
    response = later.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert response.status_code == 200
    assert [m["machine"] for m in response.get_json()] == ["t-mac-ms-001"]


def test_the_collector_is_paused_while_a_fleet_is_built_and_restored_after(client, fleet,
                                                                             monkeypatch):
    import gc

    from releng_hardware.web.app import api

    seen_enabled = []
    real = api.poll_machines

    def watched(*args, **kwargs):
        seen_enabled.append(gc.isenabled())
        return real(*args, **kwargs)
    monkeypatch.setattr(api, "poll_machines", watched)
    assert gc.isenabled()
    assert client.get(f"/machines?fields={POLL}").status_code == 200
    assert seen_enabled == [False] and gc.isenabled()
    gc.disable()  # a caller that had it off finds it off
    try:
        client.get(f"/machines?fields={POLL}")
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("stale_after", [None, 3600.0, 30 * 86400.0])
def test_the_summary_counts_the_same_from_the_counted_view_as_from_whole_machines(store,
                                                                                   stale_after):
    from releng_hardware.core.config import Config
    from releng_hardware.views.fleet import counted_json, summary
    from releng_hardware.views.reads import read_fleet
    from tests.conftest import record_every_shape

    record_every_shape(store)
    seen(store, "t-hung-1", ago=timedelta(hours=5), state="running", task="HHHHHHHHQAGAAAAAAAAAAA")
    config, threshold = Config(), stale_after or Config().stale_after
    counted = []
    for view in (counted_json, None):
        fleet = (read_fleet(store, config, NOW, stale_after, view=view) if view
                 else read_fleet(store, config, NOW, stale_after))
        counted.append(summary(fleet.machines + fleet.never_seen, fleet.pending, threshold,
                               fleet.inventory))
    assert counted[0] == counted[1]
    totals = counted[0]["totals"]
    assert totals["never_seen"] == 2 and totals["problems"]["hung_task"] == 1


@pytest.mark.parametrize("args", [
    {}, {"sort": "-machine"}, {"sort": "lastseen"}, {"sort": "-lastseen"}, {"datacenter": "mdc2"},
    {"worker_type": "gecko-t-win10-64-hw"}, {"provisioner": "releng-hardware"},
    {"state": "exception"}, {"stale": "6h"}, {"seen_within": "2h", "sort": "-lastseen"},
    {"problem": "any"}, {"problem": "hung_task"}, {"problem": "never_seen", "sort": "-machine"},
])
def test_select_picks_and_orders_the_same_from_the_counted_view_as_from_whole_machines(store, args):
    from releng_hardware.core.config import Config
    from releng_hardware.views.fleet import MachineQuery, counted_json, select
    from releng_hardware.views.reads import read_fleet
    from tests.conftest import record_every_shape

    record_every_shape(store)
    seen(store, "t-hung-1", ago=timedelta(hours=5), state="running", task="HHHHHHHHQAGAAAAAAAAAAA")
    query = MachineQuery.from_args(args)
    chosen = []
    for fleet in (read_fleet(store, Config(), NOW, view=counted_json),
                  read_fleet(store, Config(), NOW)):
        chosen.append([machine["id"] for machine in select(fleet.machines + fleet.never_seen, query)])
    assert chosen[0] == chosen[1]
    assert chosen[0]  # every query here selects some machine, so the order is compared too


def test_in_full_builds_the_machines_of_a_counted_read_as_the_whole_view_does(store):
    from releng_hardware.core.config import Config
    from releng_hardware.views.fleet import counted_json
    from releng_hardware.views.reads import read_fleet
    from tests.conftest import record_every_shape

    record_every_shape(store)
    light = read_fleet(store, Config(), NOW, view=counted_json)
    whole = read_fleet(store, Config(), NOW)
    rows = (light.machines + light.never_seen)[::-1]
    assert light.in_full(rows) == (whole.machines + whole.never_seen)[::-1]
    assert light.in_full(rows[:2]) == (whole.machines + whole.never_seen)[:-3:-1]
    assert {machine["id"] for machine in whole.never_seen} == {"mdc1:t-linux64-ms-199",
                                                               "mdc3:t-spare-1"}


# -- the table of fields (releng_hardware.views.fields) and the builders it is held to ------------

def _every_shape_read(store, view=None):
    from releng_hardware.core.config import Config
    from releng_hardware.views.reads import read_fleet
    from tests.conftest import record_every_shape

    record_every_shape(store)
    fleet = read_fleet(store, Config(), NOW, view=view) if view else read_fleet(store, Config(), NOW)
    return fleet.machines + fleet.never_seen


def test_machine_json_builds_the_fields_of_the_table_in_its_order(store):
    from releng_hardware.views.fields import LAST_TASK_FIELDS, RUN_COUNTS

    machines = _every_shape_read(store)
    assert {machine["lastseen"] is None for machine in machines} == {True, False}
    assert {machine["last_task"] is None for machine in machines} == {True, False}
    for machine in machines:
        assert tuple(machine) == MACHINE_FIELDS
        assert tuple(machine["counts"]) == RUN_COUNTS
        if machine["last_task"] is not None:
            assert tuple(machine["last_task"]) == LAST_TASK_FIELDS


def test_the_typed_machines_have_the_keys_of_the_table():
    from releng_hardware.views.fields import (LAST_TASK_FIELDS, RUN_COUNTS, CountedMachine, Counts,
                                        LastTask, Machine, MachineDetail, Tier, FIELDS)

    assert tuple(Machine.__annotations__) == MACHINE_FIELDS
    assert tuple(MachineDetail.__annotations__) == (*MACHINE_FIELDS, "recent_tasks")
    assert tuple(LastTask.__annotations__) == LAST_TASK_FIELDS
    assert tuple(Counts.__annotations__) == RUN_COUNTS
    # counted_json keeps last_task's state for select's state filter: a partial last_task
    assert tuple(CountedMachine.__annotations__) == tuple(
        field.name for field in FIELDS if field.tier <= Tier.COUNTED or field.name == "last_task")


def test_counted_json_builds_its_tier_as_machine_json_does(store):
    from releng_hardware.views.fields import FIELDS, CountedMachine, Tier
    from releng_hardware.views.fleet import counted_json

    counted = _every_shape_read(store, counted_json)
    whole = _every_shape_read(store)
    names = [field.name for field in FIELDS if field.tier <= Tier.COUNTED]
    assert len(names) < len(MACHINE_FIELDS)
    for light, full in zip(counted, whole, strict=True):
        assert tuple(light) == tuple(CountedMachine.__annotations__)
        assert {name: light[name] for name in names} == {name: full[name] for name in names}
        assert light["last_task"] == (None if full["last_task"] is None
                                      else {"state": full["last_task"]["state"]})


def test_the_lastseen_tier_is_what_a_lastseen_row_holds():
    from releng_hardware.views.fields import LASTSEEN_FIELDS
    from releng_hardware.views.fleet import _LASTSEEN_ROW_FIELDS, POLL_FIELDS

    assert frozenset(_LASTSEEN_ROW_FIELDS) == LASTSEEN_FIELDS
    assert LASTSEEN_FIELDS.issuperset(POLL_FIELDS)


def test_fields_of_the_counted_tier_are_served_without_building_whole_machines(client, fleet,
                                                                               monkeypatch):
    from releng_hardware.views import fleet as views

    url = "/machines?fields=id,stale,problems,worker_type&include=never_seen&sort=-lastseen"
    full = client.get("/machines?include=never_seen&sort=-lastseen").get_json()
    wanted = ("id", "stale", "problems", "worker_type")

    def refuse(*_args, **_kwargs):
        raise AssertionError("built a whole machine")
    monkeypatch.setattr(views, "machine_json", refuse)
    assert client.get(url).get_json() == [{name: machine[name] for name in wanted}
                                          for machine in full]
    # a field only machine_json builds still needs it (the app turns the refusal into a 500)
    assert client.get("/machines?fields=id,counts").status_code == 500


@pytest.mark.parametrize("name", MACHINE_FIELDS)
def test_each_field_fills_as_many_csv_cells_as_it_has_columns(store, name):
    from releng_hardware.views.fleet import csv_columns, csv_rows

    machines = _every_shape_read(store)
    rows = list(csv_rows(machines, (name,)))
    assert len(rows) == len(machines)
    assert {len(row) for row in rows} == {len(csv_columns((name,)))}


def test_the_default_csv_columns_are_the_table_s_in_their_csv_places():
    from releng_hardware.views.fields import CSV_FIELDS, FIELDS

    placed = [field for field in FIELDS if field.csv_place is not None]
    assert sorted(field.csv_place for field in placed) == list(range(len(placed)))
    assert [CSV_FIELDS.index(field.name) for field in placed] == [field.csv_place for field in placed]
