"""The dashboard page at `/`, through Flask's test client on fakeredis."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from releng_hardware.web.dashboard import (PAGE_SIZE, duration_text, needs_attention, peer_words,
                                       problem_help, relative_age, run_took)
from releng_hardware.core.problems import PROBLEMS
from releng_hardware.core.events import PendingEvent, WorkerEvent
from tests.conftest import DEADLINE, NOW, make_config, seen





@pytest.fixture
def fleet(store):
    """Four machines in two datacenters: fresh, stale with work waiting, quiet, and long gone."""
    seen(store, "t-linux64-ms-100", ago=timedelta(minutes=5))
    seen(store, "t-w1064-ms-281", dc="mdc2", ago=timedelta(hours=7), worker_type="gecko-t-win10-64-hw",
         task="CCCCCCCCQAGAAAAAAAAAAA", state="exception", reason="worker-shutdown")
    seen(store, "t-linux64-ms-101", ago=timedelta(hours=3, minutes=12), task="BBBBBBBBQAGAAAAAAAAAAA",
         state="failed")
    seen(store, "t-linux64-ms-100", dc="mdc2", ago=timedelta(days=3), task="DDDDDDDDQAGAAAAAAAAAAA")
    store.record([PendingEvent("releng-hardware", "gecko-t-win10-64-hw", "EEEEEEEEQAGAAAAAAAAAAA", 0,
                               NOW, DEADLINE)], now=NOW)
    return store


class Page(HTMLParser):
    """The parts of the dashboard a person looks at, read from its HTML."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.summary_rows: list[list[str]] = []
        self.label_rows: list[dict] = []
        self.options: dict[str, list[tuple[str, bool]]] = {}
        self.inputs: list[dict] = []
        self.links: dict[str, str] = {}
        self.resources: list[str] = []
        self.meta: list[dict] = []
        self._table: str | None = None
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self._select: str | None = None
        self._in_tbody = False
        self._section: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "table":
            self._table = attr.get("id")
        elif tag == "tbody":
            self._in_tbody = True
            self._section = attr.get("id")
        elif tag == "tr" and self._in_tbody:
            self._row = {"class": attr.get("class", "").split(), "id": attr.get("data-id"),
                         "cells": [], "links": [], "titles": [], "section": self._section}
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "a":
            if self._row is not None:
                self._row["links"].append(attr["href"])
            if "id" in attr:
                self.links[attr["id"]] = attr["href"]
        elif tag == "time" and self._row is not None:
            self._row["titles"].append(attr.get("title"))
        elif tag == "select":
            self._select = attr["name"]
            self.options[self._select] = []
        elif tag == "option" and self._select:
            self.options[self._select].append((attr["value"], "selected" in attr))
        elif tag == "input":
            self.inputs.append(attr)
        elif tag in ("script", "img", "iframe"):
            self.resources.append(attr.get("src", ""))
        elif tag == "link":
            self.resources.append(attr.get("href", ""))
        elif tag == "meta":
            self.meta.append(attr)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._table == "machines" and self._row["id"]:
                self.rows.append(self._row)
            elif self._table == "summary":
                self.summary_rows.append(self._row["cells"])
            elif self._table == "labels-table":
                self.label_rows.append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def row(self, machine_id: str) -> dict:
        """The table row of one machine."""
        return next(row for row in self.rows if row["id"] == machine_id)

    @property
    def ids(self) -> list[str]:
        """Machine ids in table order."""
        return [row["id"] for row in self.rows]

    def section(self, name: str) -> list[str]:
        """Machine ids of one section of the table ("attention" or "others"), in order."""
        return [row["id"] for row in self.rows if row["section"] == f"section-{name}"]


def page(client, url: str = "/") -> Page:
    """GET a dashboard URL that must succeed, parsed."""
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[-500:]
    assert response.mimetype == "text/html"
    return Page(response.get_data(as_text=True))


def test_page_lists_every_machine_with_datacenter_worker_type_and_hostname(client, fleet):
    dashboard = page(client)
    assert sorted(dashboard.ids) == ["mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101",
                                     "mdc2:t-linux64-ms-100", "mdc2:t-w1064-ms-281"]
    status, datacenter, worker_type, hostname, *_ = dashboard.row("mdc2:t-w1064-ms-281")["cells"]
    assert (datacenter, worker_type, hostname) == ("mdc2", "gecko-t-win10-64-hw", "t-w1064-ms-281")


def test_last_seen_is_a_relative_age_from_the_app_clock_with_utc_time_on_hover(client, fleet):
    row = page(client).row("mdc1:t-linux64-ms-101")
    assert row["cells"][4] == "3h 12m ago"
    assert row["titles"] == ["2026-11-20 11:48:00 UTC"]


def test_last_task_state_links_to_taskcluster(client, fleet):
    row = page(client).row("mdc2:t-w1064-ms-281")
    assert row["links"][-1] == "https://firefox-ci-tc.services.mozilla.com/tasks/CCCCCCCCQAGAAAAAAAAAAA"
    assert row["cells"][5] == "exception worker-shutdown"


def test_stale_rows_are_marked_and_work_waiting_is_marked_apart(client, fleet):
    dashboard = page(client)
    assert "idle-waiting" in dashboard.row("mdc2:t-w1064-ms-281")["class"]
    assert "stale" in dashboard.row("mdc2:t-linux64-ms-100")["class"]
    assert dashboard.row("mdc2:t-linux64-ms-100")["cells"][0] == "stale"
    assert dashboard.row("mdc2:t-w1064-ms-281")["cells"][0] == "work waiting stale"
    for fresh in ("mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101"):
        assert not {"stale", "idle-waiting"} & set(dashboard.row(fresh)["class"])


def test_stale_follows_the_configured_threshold(app_factory, fleet):
    dashboard = page(app_factory(make_config(stale_after=3 * 3600.0)).test_client())
    assert "stale" in dashboard.row("mdc1:t-linux64-ms-101")["class"]
    stale_box = next(field for field in dashboard.inputs if field.get("name") == "stale")
    assert stale_box["value"] == "3h" and "checked" not in stale_box


@pytest.mark.parametrize("query", [
    "", "stale=6h&datacenter=mdc1", "stale=6h", "datacenter=mdc2", "worker_type=gecko-t-linux-talos",
    "sort=lastseen", "sort=-lastseen", "sort=-machine", "datacenter=mdc2&sort=-lastseen",
    "state=failed", "seen_within=4h&provisioner=releng-hardware", "stale=1d",
])
def test_page_shows_exactly_what_the_api_returns_for_the_same_query(client, fleet, query):
    api = client.get(f"/machines?{query}")
    assert api.status_code == 200
    machines = api.get_json()
    dashboard = page(client, f"/?{query}")
    # the same machines in the same order, those needing attention lifted to the top
    assert dashboard.section("attention") == [m["id"] for m in machines if needs_attention(m)]
    assert dashboard.section("others") == [m["id"] for m in machines if not needs_attention(m)]
    assert dashboard.ids == dashboard.section("attention") + dashboard.section("others")


def test_stale_only_view_of_one_datacenter(client, fleet):
    assert page(client, "/?stale=6h&datacenter=mdc2").ids == ["mdc2:t-linux64-ms-100",
                                                              "mdc2:t-w1064-ms-281"]
    assert page(client, "/?stale=6h&datacenter=mdc1").ids == []


def test_filter_boxes_offer_the_data_and_keep_the_current_choice(client, fleet):
    dashboard = page(client, "/?datacenter=mdc2&stale=6h&sort=-lastseen")
    assert dashboard.options["datacenter"] == [("", False), ("mdc1", False), ("mdc2", True)]
    assert [value for value, _ in dashboard.options["worker_type"]] == [
        "", "gecko-t-linux-talos", "gecko-t-win10-64-hw"]
    stale_box = next(field for field in dashboard.inputs if field.get("name") == "stale")
    assert stale_box["value"] == "6h" and "checked" in stale_box
    # the sort survives a change of filter
    assert {"type": "hidden", "name": "sort", "value": "-lastseen"} in dashboard.inputs


def test_sort_links_toggle_direction_and_keep_the_filters(client, fleet):
    dashboard = page(client, "/?datacenter=mdc1")
    assert dashboard.links["sort-machine"] == "/?datacenter=mdc1&sort=-machine"
    assert dashboard.links["sort-lastseen"] == "/?datacenter=mdc1&sort=lastseen"
    oldest_first = page(client, dashboard.links["sort-lastseen"])
    assert oldest_first.ids == ["mdc1:t-linux64-ms-101", "mdc1:t-linux64-ms-100"]
    assert oldest_first.links["sort-lastseen"] == "/?datacenter=mdc1&sort=-lastseen"


def test_empty_parameters_from_a_plain_form_mean_any(client, fleet):
    assert page(client, "/?datacenter=&worker_type=").ids == page(client, "/").ids


@pytest.mark.parametrize("query, named", [
    ("stale=soon", "stale"), ("datacenter=mdc1!", "datacenter"), ("sort=hostname", "sort"),
    ("colour=red", "colour"), ("datacenter=mdc1&datacenter=mdc2", "datacenter"),
    ("format=csv", "format"),
])
def test_invalid_parameters_are_an_html_400_naming_the_parameter(client, fleet, query, named):
    response = client.get(f"/?{query}")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    message = re.search(r'<p class="message">(.*?)</p>', response.get_data(as_text=True)).group(1)
    assert named in message


def test_summary_on_top_counts_each_datacenter_and_worker_type(client, fleet):
    rows = page(client).summary_rows
    # datacenter, worker type, total, seen 1h, stale, idle with work, exception, quarantined,
    # pending, problems
    assert rows == [
        ["mdc1", "gecko-t-linux-talos", "2", "1", "0", "0", "0", "0", "0", ""],
        ["mdc2", "gecko-t-linux-talos", "1", "0", "1", "0", "0", "0", "0", "stale 1"],
        ["mdc2", "gecko-t-win10-64-hw", "1", "0", "1", "1", "1", "0", "1", "work waiting 1 stale 1"],
    ]


def test_summary_rows_link_to_their_filtered_view(client, fleet):
    html = client.get("/").get_data(as_text=True)
    assert 'href="/?datacenter=mdc2&amp;worker_type=gecko-t-win10-64-hw"' in html


def test_page_refreshes_every_minute_keeping_its_url_and_fits_a_phone(client, fleet):
    meta = page(client, "/?datacenter=mdc1").meta
    # a refresh without a URL reloads the same URL, filters included
    assert {"http-equiv": "refresh", "content": "60"} in meta
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in meta


def test_page_loads_nothing_from_elsewhere(client, fleet):
    response = client.get("/")
    resources = Page(response.get_data(as_text=True)).resources
    assert resources == ["/static/favicon.svg", "/static/dashboard.css", "/static/dashboard.js"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    for resource in resources:
        assert client.get(resource).status_code == 200


def test_everything_from_redis_is_escaped(client, store):
    store.redis.hset("machines", "mdc1:<script>alert(1)</script>", "2026-11-20T14:00:00.000000")
    store.redis.hset("machine_records", "mdc1:<script>alert(1)</script>",
                     '{"worker_type": "<b>wt</b>", "task_id": "\\"><img src=x>", "state": "failed"}')
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert" not in html and "<b>wt</b>" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_empty_fleet_says_so(client):
    html = client.get("/").get_data(as_text=True)
    assert "No machine has been seen yet." in html
    assert "No machine matches these filters." in html


def test_redis_down_is_an_html_503_that_keeps_refreshing(client, fleet, fake_server):
    fake_server.connected = False
    response = client.get("/?datacenter=mdc1")
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert response.headers["Retry-After"] == "5"
    assert {"http-equiv": "refresh", "content": "60"} in Page(response.get_data(as_text=True)).meta


def test_json_api_errors_stay_json_next_to_the_page(client, fleet):
    response = client.get("/machines?stale=soon")
    assert response.status_code == 400 and response.get_json()["parameter"] == "stale"


@pytest.mark.parametrize("age, text", [
    (None, "unknown"), (-5, "in the future"), (0, "0s ago"), (59.9, "59s ago"), (60, "1m ago"),
    (3599, "59m ago"), (3600, "1h ago"), (11520, "3h 12m ago"), (86400, "1d ago"),
    (3 * 86400 + 5 * 3600 + 59, "3d 5h ago"),
])
def test_relative_age_shows_the_two_largest_units(age, text):
    assert relative_age(age) == text


@pytest.mark.parametrize("seconds, text", [
    (21600.0, "6h"), (5400.0, "90m"), (172800.0, "2d"), (45.0, "45s"), (0.5, "0.5s"), (3601.0, "3601s"),
])
def test_duration_text_is_a_valid_api_duration(seconds, text):
    assert duration_text(seconds) == text


def test_filter_choices_never_offer_an_empty_value_for_machines_without_worker_type(client, fleet):
    # a preloaded machine has no worker type
    fleet.preload({"mdc3:t-mac-ms-001": NOW - timedelta(hours=1)})
    dashboard = page(client, "/?worker_type=gecko-t-linux-talos&datacenter=mdc1")
    for name in ("worker_type", "datacenter"):
        values = [value for value, _ in dashboard.options[name]]
        assert values[0] == "", "the first option is 'any'"
        assert "" not in values[1:], f"{name} offers an empty choice besides 'any': {values}"
    assert [value for value, _ in dashboard.options["worker_type"]][1:] == [
        "gecko-t-linux-talos", "gecko-t-win10-64-hw"]
    assert [value for value, _ in dashboard.options["datacenter"]][1:] == ["mdc1", "mdc2", "mdc3"]


# -- the machines needing attention first, a page at a time --------------------------

def test_machines_needing_attention_come_first_under_their_own_heading(client, fleet):
    html = client.get("/").get_data(as_text=True)
    dashboard = Page(html)
    assert dashboard.section("attention") == ["mdc2:t-linux64-ms-100", "mdc2:t-w1064-ms-281"]
    assert dashboard.section("others") == ["mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-101"]
    assert re.search(r"Needs attention <span class=\"section-count\">2 machines</span>", html)
    assert re.search(r"Everything else <span class=\"section-count\">2 machines</span>", html)
    assert "<strong>2 need attention</strong>" in html


def test_hostnames_link_to_the_machine_page(client, fleet):
    row = page(client).row("mdc2:t-w1064-ms-281")
    assert [link for link in row["links"] if link.startswith("/machine/")] == [
        "/machine/mdc2:t-w1064-ms-281"]


@pytest.fixture
def big_fleet(store):
    """Two and a quarter pages of machines, 30 of them stale, in two datacenters."""
    store.preload({f"mdc{1 + number % 2}:t-linux64-ms-{number:04}":
                   NOW - (timedelta(days=1) if number % 15 == 0 else timedelta(minutes=number % 50))
                   for number in range(2 * PAGE_SIZE + 50)})
    return store


def follow_pages(client, url: str) -> tuple[list[str], list[str]]:
    """Every machine id over the pages from `url` on, following the Next links; the URLs visited."""
    ids, urls = [], []
    while url:
        dashboard = page(client, url)
        ids += dashboard.ids
        urls.append(url)
        url = dashboard.links.get("next-bottom")
    return ids, urls


def test_a_big_fleet_is_shown_a_page_at_a_time_attention_first(client, big_fleet):
    first = page(client, "/")
    assert len(first.ids) == PAGE_SIZE
    assert first.ids[:30] == first.section("attention") and len(first.section("attention")) == 30
    ids, urls = follow_pages(client, "/")
    assert urls == ["/", "/?page=2", "/?page=3"]
    api = client.get("/machines").get_json()
    assert ids == ([m["id"] for m in api if needs_attention(m)]
                   + [m["id"] for m in api if not needs_attention(m)])
    last = page(client, "/?page=3")
    assert len(last.ids) == 50 and last.section("attention") == []
    assert "next-bottom" not in last.links and last.links["prev-bottom"] == "/?page=2"
    assert page(client, "/?page=2").links["prev-top"] == "/"


def test_page_links_keep_the_filters_and_filters_return_to_the_first_page(client, big_fleet):
    ids, urls = follow_pages(client, "/?datacenter=mdc2&sort=-lastseen")
    assert urls == ["/?datacenter=mdc2&sort=-lastseen", "/?datacenter=mdc2&sort=-lastseen&page=2"]
    assert sorted(ids) == sorted(m["id"] for m in client.get("/machines?datacenter=mdc2").get_json())
    second = page(client, urls[1])
    # a new order or filter starts over at page 1, and the JSON link is a valid API query
    assert second.links["sort-machine"] == "/?datacenter=mdc2&sort=machine"
    html = client.get(urls[1]).get_data(as_text=True)
    assert 'href="/machines?datacenter=mdc2&amp;sort=-lastseen&amp;include=never_seen">this view as JSON' in html
    assert not any(field.get("name") == "page" for field in second.inputs)


def test_a_page_past_the_end_shows_the_last_page(client, big_fleet):
    assert page(client, "/?page=99").ids == page(client, "/?page=3").ids
    assert "Page 3 of 3" in client.get("/?page=99").get_data(as_text=True)


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "²", "9999999999", "02"])
def test_a_bad_page_number_is_an_html_400_naming_it(client, fleet, value):
    response = client.get(f"/?page={value}")
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "page" in response.get_data(as_text=True)


def test_one_page_needs_no_page_links(client, fleet):
    html = client.get("/").get_data(as_text=True)
    assert 'class="pager"' not in html
    assert "Showing 1–4 of 4 matching machines" in html


# -- the machine page -----------------------------------------------------------------

def machine_facts(html: str) -> dict[str, str]:
    """The machine page's facts: label -> the HTML of its value."""
    facts = re.search(r'<dl class="facts" id="facts">(.*?)</dl>', " ".join(html.split())).group(1)
    return dict(re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", facts))


def test_machine_page_says_what_the_machine_is_and_did(client, fleet):
    response = client.get("/machine/mdc2:t-w1064-ms-281")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    facts = machine_facts(html)
    assert re.sub(r"<[^>]+>", "", facts["Last seen"]).split(" · ") == [
        "7h ago 2026-11-20 08:00:00 UTC", "stale (not seen for 6h)", "work waiting"]
    assert 'href="/?datacenter=mdc2&amp;worker_type=gecko-t-win10-64-hw"' in facts["Worker type"]
    assert "https://firefox-ci-tc.services.mozilla.com/tasks/CCCCCCCCQAGAAAAAAAAAAA" in facts["Last task"]
    assert "worker-shutdown" in facts["Last task"]
    assert facts["Runs"] == "0 completed · 0 failed · 1 exception"
    assert 'href="/machines/mdc2:t-w1064-ms-281"' in html
    assert Page(html).resources == ["/static/favicon.svg", "/static/dashboard.css"]


def test_machine_page_of_a_preloaded_machine_shows_what_is_known(client, store):
    store.preload({"mdc3:t-mac-ms-001": NOW - timedelta(hours=1)})
    html = client.get("/machine/mdc3:t-mac-ms-001").get_data(as_text=True)
    assert "1h ago" in html and "none recorded" in html


@pytest.mark.parametrize("url, status", [
    ("/machine/mdc1:t-never-seen", 404), ("/machine/t-linux64-ms-100", 400),
    ("/machine/mdc1:bad!host", 400), ("/machine/mdc2:t-w1064-ms-281?page=2", 400),
])
def test_machine_page_errors_are_html(client, fleet, url, status):
    response = client.get(url)
    assert response.status_code == status and response.mimetype == "text/html"
    assert re.search(r'<p class="message">.+</p>', response.get_data(as_text=True))


def test_machine_page_escapes_what_comes_from_redis(client, store):
    store.redis.hset("machines", "mdc1:t-odd", "2026-11-20T14:00:00.000000")
    store.redis.hset("machine_records", "mdc1:t-odd",
                     '{"worker_type": "<b>wt</b>", "task_id": "\\"><img src=x>", "state": "failed"}')
    html = client.get("/machine/mdc1:t-odd").get_data(as_text=True)
    assert "<b>wt</b>" not in html and "<img src=x>" not in html and "&lt;b&gt;wt&lt;/b&gt;" in html


# -- problems as badges that explain themselves ---------------------------------------

@pytest.fixture
def troubled(fleet):
    """The fleet plus a machine failing every task while fresh, and one whose newest run hangs."""
    runs = [("completed", None), ("failed", None), ("exception", "claim-expired"),
            ("exception", "canceled"), ("failed", None), ("failed", None)]
    for number, (state, reason) in enumerate(runs):
        seen(fleet, "t-linux64-ms-200", ago=timedelta(minutes=60 - 10 * number), state=state,
             reason=reason, task=f"FFFFFFFFQAGAAAAAAAAAA{number}")
    seen(fleet, "t-linux64-ms-300", ago=timedelta(hours=4), state="running",
         task="HHHHHHHHQAGAAAAAAAAAAA")
    return fleet


def test_every_problem_the_api_knows_is_explained_in_order_of_urgency(config):
    explained = problem_help(config)
    assert set(explained) == set(PROBLEMS)
    assert list(explained)[0] == "idle_with_work_waiting"
    for code, help in explained.items():
        assert help.label and help.meaning.endswith(".") and help.action.endswith(".")
        assert help.tone in ("down", "failing", "inventory"), code


def test_problem_explanations_quote_the_configured_thresholds():
    explained = problem_help(make_config(stale_after=7200.0, hung_after=5 * 3600.0,
                                         failure_streak=4, success_rate_min=0.9))
    assert "2h" in explained["stale"].meaning and "5h" in explained["hung_task"].meaning
    assert "4 counted runs" in explained["consecutive_failures"].meaning
    assert "90%" in explained["low_success_rate"].meaning


def test_each_problem_is_a_badge_with_its_meaning_on_hover_and_a_link_to_the_legend(client, troubled):
    html = client.get("/").get_data(as_text=True)
    dashboard = Page(html)
    row = dashboard.row("mdc1:t-linux64-ms-200")
    assert row["cells"][0] == "failing" and "trouble" in row["class"]
    badge = re.search(r'<a class="problem tone-failing" href="#problem-consecutive_failures" '
                      r'title="([^"]+)" data-problem="consecutive_failures">failing</a>', html)
    assert badge and "newest 3 counted runs all failed" in badge.group(1)
    assert "quarantine" in badge.group(1)
    assert dashboard.row("mdc1:t-linux64-ms-300")["cells"][0] == "hung task"
    # the legend explains every problem, each under the anchor its badges link to
    for code in PROBLEMS:
        assert f'<tr id="problem-{code}">' in html
    assert 'href="#legend">What the badges mean</a>' in html


def test_failing_and_hung_machines_need_attention_though_recently_seen(client, troubled):
    dashboard = page(client)
    assert dashboard.section("attention") == [
        "mdc2:t-linux64-ms-100", "mdc1:t-linux64-ms-200", "mdc1:t-linux64-ms-300",
        "mdc2:t-w1064-ms-281"]


def test_a_machine_only_missing_from_the_inventory_does_not_need_attention():
    assert not needs_attention({"problems": ["not_in_inventory"]})
    assert needs_attention({"problems": ["not_in_inventory", "stale"]})
    assert not needs_attention({"problems": []})


@pytest.mark.parametrize("query", [
    "problem=any", "problem=consecutive_failures", "problem=stale&sort=-lastseen",
    "problem=hung_task&datacenter=mdc1", "problem=lost_mid_task",
])
def test_problem_filters_show_what_the_api_returns(client, troubled, query):
    machines = client.get(f"/machines?{query}").get_json()
    dashboard = page(client, f"/?{query}")
    assert dashboard.ids == ([m["id"] for m in machines if needs_attention(m)]
                             + [m["id"] for m in machines if not needs_attention(m)])
    chosen = query.split("&")[0].split("=")[1]
    assert (chosen, True) in dashboard.options["problem"]


def test_problem_choices_are_any_and_every_code(client, troubled):
    values = [value for value, _ in page(client).options["problem"]]
    assert values == ["", "any", *problem_help(make_config())]


def test_summary_counts_problems_and_links_to_those_machines(client, troubled):
    html = client.get("/").get_data(as_text=True)
    assert ('href="/?datacenter=mdc1&amp;worker_type=gecko-t-linux-talos&amp;problem=consecutive_failures"'
            in html)
    linux = next(row for row in page(client).summary_rows if row[:2] == ["mdc1", "gecko-t-linux-talos"])
    assert linux[-1] == "hung task 1 failing 1"


# -- the machine's recent runs -------------------------------------------------------------

def test_machine_page_explains_each_problem_with_what_to_do(client, troubled):
    html = " ".join(client.get("/machine/mdc1:t-linux64-ms-200").get_data(as_text=True).split())
    section = re.search(r'<div class="problems" id="problems">(.*?)</dl>', html).group(1)
    assert re.findall(r'<div id="problem-(\w+)">', section) == ["consecutive_failures"]
    assert "What to do:</strong> If the same tasks pass on other machines" in section


def test_machine_page_shows_recent_runs_as_a_strip_oldest_first_and_a_table_newest_first(
        client, troubled):
    runs = client.get("/machines/mdc1:t-linux64-ms-200").get_json()["recent_tasks"]
    html = client.get("/machine/mdc1:t-linux64-ms-200").get_data(as_text=True)
    strip = re.search(r'<p class="strip" id="strip">(.*?)</p>', html, re.S).group(1)
    squares = re.findall(r'<a class="run run-([\w-]+)" href="([^"]+)"', strip)
    assert squares == [(outcome, run["url"]) for outcome, run in zip(
        ["completed", "failed", "lost", "not-counted", "failed", "failed"], reversed(runs), strict=True)]
    assert all(url.startswith("https://firefox-ci-tc.services.mozilla.com/tasks/FFFFFFFF")
               for _, url in squares)
    table = re.search(r'<table class="runs" id="runs-table">(.*?)</table>', html, re.S).group(1)
    assert re.findall(r'data-outcome="([\w-]+)"', table) == [
        "failed", "failed", "not-counted", "lost", "failed", "completed"]
    assert re.findall(r'<a href="([^"]+)">', table) == [run["url"] for run in runs]


def test_a_running_run_shows_how_long_it_has_been_running(client, troubled):
    html = " ".join(client.get("/machine/mdc1:t-linux64-ms-300").get_data(as_text=True).split())
    assert '<td class="took">4h so far</td>' in html
    assert 'data-problem="hung_task"' in html


def test_machine_without_history_says_so(client, store):
    store.preload({"mdc3:t-mac-ms-001": NOW - timedelta(hours=1)})
    html = client.get("/machine/mdc3:t-mac-ms-001").get_data(as_text=True)
    assert 'id="no-runs"' in html and 'id="strip"' not in html


@pytest.mark.parametrize("run, text", [
    ({"started": "2026-11-20T14:00:00.000000", "resolved": "2026-11-20T14:42:10.000000",
      "state": "completed", "reason_resolved": "completed"}, "42m"),
    ({"started": "2026-11-20T11:00:00.000000", "resolved": None, "state": "running",
      "reason_resolved": None}, "4h so far"),
    ({"started": None, "resolved": "2026-11-20T14:00:00.000000", "state": "completed",
      "reason_resolved": "completed"}, ""),
    ({"started": "garbage", "resolved": None, "state": "running", "reason_resolved": None}, ""),
])
def test_run_took_says_how_long_a_run_took_without_a_peer_median(run, text):
    assert run_took(run, NOW) == (text, None)


# -- task labels: the ones failing on several machines, and each run against its peers ----------

BAD_PUSH = "test-linux1804-64-shippable-qr/opt-talos-g4-e10s"
PASSING = "test-windows10-64-hw/opt-mochitest-1"


def labelled_run(store, host: str, label: str, state: str, *, minutes_ago: float, task: str,
                 worker_type: str = "gecko-t-linux-talos", took: float = 10) -> None:
    """One resolved run of `label` on mdc1:`host`, ending `minutes_ago` before NOW."""
    end = NOW - timedelta(minutes=minutes_ago)
    store.record([WorkerEvent("mdc1", host, "releng-hardware", worker_type, task, 0, state, state,
                              end, None, True, end - timedelta(minutes=took), end, label)], now=NOW)


@pytest.fixture
def labelled(store):
    """A bad push failing on three linux machines and a windows one; a label passing on three
    machines and failing on a fourth, which also runs it slowly."""
    for i, host in enumerate(("ms-1", "ms-2", "ms-3")):
        labelled_run(store, host, BAD_PUSH, "failed", minutes_ago=60 - i, task=f"BADPUSH{i}QAGAAAAAAAAAAA")
    labelled_run(store, "w-1", BAD_PUSH, "failed", minutes_ago=50, worker_type="gecko-t-win",
                 task="BADPUSH9QAGAAAAAAAAAAA")
    for i, host in enumerate(("ms-5", "ms-6", "ms-7")):
        labelled_run(store, host, PASSING, "completed", minutes_ago=40 - i, took=10 + i,
                     task=f"PASSING{i}QAGAAAAAAAAAAA")
    labelled_run(store, "ms-9", PASSING, "failed", minutes_ago=30, task="PASSFAILQAGAAAAAAAAAAA")
    labelled_run(store, "ms-9", PASSING, "completed", minutes_ago=20, took=22,
                 task="PASSSLOWQAGAAAAAAAAAAA")
    return store


def test_labels_failing_on_several_machines_have_their_panel_from_the_labels_data(client, labelled):
    labels = client.get("/labels").get_json()
    assert [label["label"] for label in labels] == [BAD_PUSH]
    html = client.get("/").get_data(as_text=True)
    assert 'id="labels-title">Failing on several machines' in html
    rows = Page(html).label_rows
    assert [row["cells"][:4] for row in rows] == [
        [label["label"], " ".join(label["worker_types"]), str(label["machines_failed"]),
         str(label["machines_completed"])] for label in labels]
    (row,) = rows
    assert row["cells"][4] == "50m ago"
    assert row["links"][-1] == labels[0]["last_failure_url"]
    assert row["links"][0] == "/?worker_type=gecko-t-linux-talos"
    assert "more than 2 machines within 1d" in html and 'href="/labels">these labels as JSON' in html


def test_the_labels_panel_follows_the_pages_worker_type(client, labelled):
    linux = Page(client.get("/?worker_type=gecko-t-linux-talos").get_data(as_text=True))
    assert [(row["cells"][1], row["cells"][2]) for row in linux.label_rows] == [
        ("gecko-t-linux-talos", "3")]
    # one failure on the windows machines is no bad push of theirs
    assert client.get("/labels?worker_type=gecko-t-win").get_json() == []
    assert 'id="labels"' not in client.get("/?worker_type=gecko-t-win").get_data(as_text=True)


def test_no_labels_panel_when_no_label_fails_on_several_machines(client, fleet):
    assert 'id="labels"' not in client.get("/").get_data(as_text=True)


def runs_table(client, machine_id: str) -> list[list[str]]:
    """The cells of the machine page's runs table, newest run first, tags removed."""
    html = client.get(f"/machine/{machine_id}").get_data(as_text=True)
    table = re.search(r'<table class="runs" id="runs-table">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [[" ".join(re.sub(r"<[^>]+>", "", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]


def test_machine_page_says_each_runs_label_and_what_it_did_elsewhere(client, labelled):
    (bad,) = runs_table(client, "mdc1:ms-1")
    assert bad[1:5] == [BAD_PUSH, "failed", "", "also failed on 3 other machines"]
    done, failed = runs_table(client, "mdc1:ms-9")
    assert failed[1:5] == [PASSING, "failed", "", "passed on 3 other machines"]
    # the peer median of 10, 11 and 12 minutes
    assert done[1:5] == [PASSING, "completed", "", ""]
    assert done[-1] == "22m, 2.0× the peer median of 11m"


def test_a_run_far_slower_than_its_peers_is_marked(client, labelled, app_factory):
    html = client.get("/machine/mdc1:ms-9").get_data(as_text=True)
    assert re.search(r'<td class="took slow">22m, 2.0×', html)
    relaxed = app_factory(make_config(slow_factor=2.5)).test_client()
    assert re.search(r'<td class="took">22m, 2.0×', relaxed.get("/machine/mdc1:ms-9").get_data(as_text=True))


@pytest.mark.parametrize("attribution, peers, words", [
    ("task", {"failed": 4, "completed": 1}, "also failed on 4 other machines"),
    ("machine", {"failed": 1, "completed": 6}, "passed on 6 other machines"),
    ("machine", {"failed": 0, "completed": 1}, "passed on 1 other machine"),
    (None, {"failed": 1, "completed": 0}, ""),
    (None, None, ""),
])
def test_peer_words(attribution, peers, words):
    assert peer_words({"attribution": attribution, "peers": peers}) == words


@pytest.mark.parametrize("run, text, ratio", [
    ({"state": "completed", "reason_resolved": "completed", "started": "2026-11-20T14:00:00",
      "resolved": "2026-11-20T14:41:00", "peer_median_seconds": 18 * 60}, "41m, 2.3× the peer median of 18m",
     41 / 18),
    ({"state": "completed", "reason_resolved": "completed", "started": "2026-11-20T14:00:00",
      "resolved": "2026-11-20T14:41:00", "peer_median_seconds": None}, "41m", None),
    ({"state": "completed", "reason_resolved": "completed", "started": "2026-11-20T14:00:00",
      "resolved": "2026-11-20T14:01:50", "peer_median_seconds": 61.5}, "1m 50s, 1.8× the peer median of 1m 1s",
     110 / 61.5),
    ({"state": "failed", "reason_resolved": "failed", "started": "2026-11-20T14:00:00",
      "resolved": "2026-11-20T14:41:00", "peer_median_seconds": 600}, "41m", None),
    ({"state": "running", "reason_resolved": None, "started": "2026-11-20T11:00:00",
      "resolved": None, "peer_median_seconds": None}, "4h so far", None),
    ({"state": "completed", "reason_resolved": "completed", "started": None,
      "resolved": "2026-11-20T14:41:00", "peer_median_seconds": 600}, "", None),
])
def test_run_took_says_the_duration_against_the_peer_median(run, text, ratio):
    took = run_took(run, NOW)
    assert took.text == text
    assert took.ratio == (None if ratio is None else pytest.approx(ratio))
