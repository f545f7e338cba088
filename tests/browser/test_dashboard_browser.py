"""The dashboard in Debian's headless Chromium, served by a real HTTP server over fakeredis.

`python -m tests.browser.test_dashboard_browser docs/dashboard.png` renders the README's
screenshot from a realistic fleet.
"""

from __future__ import annotations

import random
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import fakeredis
import pytest

from releng_hardware.core.events import PendingEvent, WorkerEvent
from releng_hardware.store.machines import Store
from tests.browser.support import (ARTIFACTS, NOW, ROOT, Served, open_chromium, rows, serve,
                                   wait_for_url)

PROVISIONER = "releng-hardware"


def slugid(rng: random.Random) -> str:
    """A random id in Taskcluster's slugid shape."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return ("".join(rng.choice(alphabet) for _ in range(8)) + rng.choice("QRST")
            + rng.choice(alphabet) + rng.choice("CGKOSWaeimquy26-")
            + "".join(rng.choice(alphabet) for _ in range(10)) + rng.choice("AQgw"))


def run(datacenter: str, host: str, worker_type: str, ago: timedelta, state: str,
        rng: random.Random, reason: str | None = None,
        took: timedelta = timedelta(minutes=25)) -> WorkerEvent:
    """One run of a machine that started (when running) or ended `ago` before NOW."""
    at = NOW - ago
    return WorkerEvent(datacenter, host, PROVISIONER, worker_type, slugid(rng), 0, state,
                       None if state == "running" else (reason or state), at,
                       NOW + timedelta(days=1), True,
                       started=at if state == "running" else at - took, event_time=at)


def history(datacenter: str, host: str, worker_type: str, outcomes: str,
            rng: random.Random, newest_ago: timedelta = timedelta(minutes=5)) -> list[WorkerEvent]:
    """A machine's runs, oldest first, one every 40 minutes up to `newest_ago`: c(ompleted),
    f(ailed), e(xception), l(ost: claim-expired), r(unning)."""
    kinds = {"c": ("completed", None), "f": ("failed", None), "e": ("exception", "worker-shutdown"),
             "l": ("exception", "claim-expired"), "r": ("running", None)}
    return [run(datacenter, host, worker_type, newest_ago + timedelta(minutes=40 * age), *kinds[code][:1],
                rng, kinds[code][1])
            for age, code in zip(range(len(outcomes) - 1, -1, -1), outcomes, strict=True)]


def small_fleet(store: Store) -> None:
    """Two fresh machines in mdc1 and one stale machine in mdc2."""
    rng = random.Random(1)
    store.record([
        run("mdc1", "t-linux64-ms-100", "gecko-t-linux-talos", timedelta(minutes=4), "completed", rng),
        run("mdc1", "t-linux64-ms-102", "gecko-t-linux-talos", timedelta(minutes=40), "completed", rng),
        run("mdc2", "t-w1064-ms-281", "gecko-t-win10-64-hw", timedelta(hours=9), "exception", rng,
            "worker-shutdown"),
    ], now=NOW)


def realistic_fleet(store: Store) -> None:
    """About twenty machines as on-duty people see them: mostly busy, a few in trouble."""
    rng = random.Random(4)
    linux, windows, mac = "gecko-t-linux-talos-1804", "gecko-t-win10-64-1803-hw", "gecko-t-osx-1015-r8"
    events: list[Any] = []
    for datacenter, numbers in (("mdc1", (242, 243, 245, 246)), ("mdc2", range(512, 516))):
        for number in numbers:
            minutes = rng.choice([1, 2, 3, 6, 9, 14, 23, 41])
            events.append(run(datacenter, f"t-linux64-ms-{number}", linux, timedelta(minutes=minutes),
                              rng.choice(["running", "completed", "completed", "failed"]), rng))
    for number in (281, 282, 283):
        events.append(run("mdc1", f"t-w1064-ms-{number}", windows,
                          timedelta(minutes=rng.choice([2, 5, 12, 30])),
                          rng.choice(["running", "completed"]), rng))
    for number in (31, 32):
        events.append(run("mdc2", f"macmini-r8-{number}", mac, timedelta(minutes=rng.choice([3, 8, 17])),
                          "completed", rng))
    # runs enough to judge them by, and the ones someone should look at
    events += history("mdc1", "t-linux64-ms-240", linux, "cccfcccccccc", rng)
    events += history("mdc1", "t-linux64-ms-241", linux, "cfccccccccr", rng)
    events += history("mdc1", "t-linux64-ms-244", linux, "ccfcffeff", rng, timedelta(minutes=3))
    events += history("mdc1", "t-w1064-ms-290", windows, "ceccecce", rng, timedelta(minutes=12))
    events += history("mdc2", "macmini-r8-33", mac, "cccccr", rng, timedelta(hours=4, minutes=10))
    events += [
        run("mdc1", "t-w1064-ms-295", windows, timedelta(hours=7, minutes=41), "exception", rng,
            "worker-shutdown"),
        run("mdc2", "t-linux64-ms-518", linux, timedelta(days=2, hours=3), "exception", rng,
            "claim-expired"),
        run("mdc2", "macmini-r8-36", mac, timedelta(hours=2, minutes=18), "failed", rng),
        run("mdc1", "t-linux64-ms-251", linux, timedelta(hours=13, minutes=5), "completed", rng),
    ]
    events += [PendingEvent(PROVISIONER, windows, slugid(rng), 0, NOW, NOW + timedelta(days=1))
               for _ in range(14)]
    events += [PendingEvent(PROVISIONER, mac, slugid(rng), 0, NOW, NOW + timedelta(days=1))
               for _ in range(3)]
    store.record(events, now=NOW)


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """The app with the small fleet, served over HTTP for the whole module."""
    yield from serve(small_fleet)



def test_page_loads_and_marks_the_stale_machine(browser, server):
    browser.get(server.url + "/")
    assert browser.title == "Machines · releng-hardware"
    found = rows(browser)
    # the stale machine needs attention: it comes first
    assert list(found) == ["mdc2:t-w1064-ms-281", "mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-102"]
    assert "stale" in found["mdc2:t-w1064-ms-281"]
    assert "stale" not in found["mdc1:t-linux64-ms-100"]
    # the marking shows: the stale row is painted, the fresh one is not
    from selenium.webdriver.common.by import By
    stale_cell = browser.find_element(By.CSS_SELECTOR, 'tr[data-id="mdc2:t-w1064-ms-281"] td')
    fresh_cell = browser.find_element(By.CSS_SELECTOR, 'tr[data-id="mdc1:t-linux64-ms-100"] td')
    assert stale_cell.value_of_css_property("background-color") != \
        fresh_cell.value_of_css_property("background-color")
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))


def test_choosing_a_datacenter_narrows_the_table_and_the_url(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    browser.get(server.url + "/")
    Select(browser.find_element(By.ID, "datacenter")).select_by_value("mdc2")
    wait_for_url(browser, "datacenter=mdc2")
    assert list(rows(browser)) == ["mdc2:t-w1064-ms-281"]
    # an unchosen filter stays out of the URL, so it is also a valid /machines query
    assert browser.current_url == server.url + "/?datacenter=mdc2"


def test_filters_still_work_after_going_back(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    browser.get(server.url + "/")
    Select(browser.find_element(By.ID, "datacenter")).select_by_value("mdc1")
    wait_for_url(browser, "datacenter=mdc1")
    browser.back()
    wait_for_url(browser, server.url + "/")
    assert browser.find_element(By.ID, "worker_type").is_enabled()
    Select(browser.find_element(By.ID, "worker_type")).select_by_value("gecko-t-win10-64-hw")
    wait_for_url(browser, "worker_type=")
    assert list(rows(browser)) == ["mdc2:t-w1064-ms-281"]


def test_stale_only_checkbox_uses_the_configured_threshold(browser, server):
    from selenium.webdriver.common.by import By
    browser.get(server.url + "/")
    browser.find_element(By.ID, "stale").click()
    wait_for_url(browser, "stale=")
    assert browser.current_url == server.url + "/?stale=6h"
    assert list(rows(browser)) == ["mdc2:t-w1064-ms-281"]


def test_sorting_by_last_seen_orders_each_section_oldest_first_then_newest(browser, server):
    from selenium.webdriver.common.by import By
    stale, fresh, older = "mdc2:t-w1064-ms-281", "mdc1:t-linux64-ms-100", "mdc1:t-linux64-ms-102"
    browser.get(server.url + "/")
    assert list(rows(browser)) == [stale, fresh, older]
    browser.find_element(By.ID, "sort-lastseen").click()
    wait_for_url(browser, "sort=lastseen")
    assert list(rows(browser)) == [stale, older, fresh]
    browser.find_element(By.ID, "sort-lastseen").click()
    wait_for_url(browser, "sort=-lastseen")
    assert list(rows(browser)) == [stale, fresh, older]


def test_last_seen_shows_the_utc_time_on_hover(browser, server):
    from selenium.webdriver.common.by import By
    browser.get(server.url + "/")
    age = browser.find_element(By.CSS_SELECTOR, 'tr[data-id="mdc2:t-w1064-ms-281"] time')
    assert (age.text, age.get_attribute("title")) == ("9h ago", "2026-11-20 06:00:00 UTC")


def widths_on_a_phone(browser: Any, url: str, screenshot: str) -> tuple[int, int]:
    """(page width, view width) of a URL in a phone-sized window; saves a screenshot."""
    browser.set_window_size(390, 844)
    try:
        browser.get(url)
        page_width, view_width = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / screenshot))
        return page_width, view_width
    finally:
        browser.set_window_size(1280, 900)


def test_on_a_phone_only_the_tables_scroll_sideways(browser, server):
    page_width, view_width = widths_on_a_phone(browser, server.url + "/", "dashboard-phone.png")
    assert page_width <= view_width


def test_a_hostname_opens_the_machine_page_and_back(browser, server):
    from selenium.webdriver.common.by import By
    browser.get(server.url + "/?datacenter=mdc2")
    browser.find_element(By.LINK_TEXT, "t-w1064-ms-281").click()
    wait_for_url(browser, "/machine/mdc2:t-w1064-ms-281")
    assert browser.title == "t-w1064-ms-281 · releng-hardware"
    facts = browser.find_element(By.ID, "facts").text
    assert "9h ago" in facts and "stale" in facts and "worker-shutdown" in facts
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "machine.png"))
    browser.find_element(By.ID, "back").click()
    wait_for_url(browser, server.url + "/")
    assert len(rows(browser)) == 3


@pytest.fixture(scope="module")
def big_server() -> Iterator[Served]:
    """The app with two and a half pages of machines, some stale."""
    from releng_hardware.web.dashboard import PAGE_SIZE
    yield from serve(lambda store: store.preload({
        f"mdc{1 + number % 2}:t-linux64-ms-{number:04}":
            NOW - (timedelta(days=1) if number % 20 == 0 else timedelta(minutes=number % 50))
        for number in range(2 * PAGE_SIZE + PAGE_SIZE // 2)}))


def test_a_big_fleet_opens_on_its_first_page_and_pages_keep_the_filters(browser, big_server):
    from selenium.webdriver.common.by import By

    from releng_hardware.web.dashboard import PAGE_SIZE
    browser.get(big_server.url + "/?datacenter=mdc1")
    first = rows(browser)
    assert len(first) == PAGE_SIZE
    attention = browser.find_elements(By.CSS_SELECTOR, "#section-attention tr.machine")
    assert attention and [row.get_attribute("data-id") for row in attention] == list(first)[:len(attention)]
    browser.find_element(By.ID, "next-bottom").click()
    wait_for_url(browser, "page=2")
    assert browser.current_url == big_server.url + "/?datacenter=mdc1&page=2"
    second = rows(browser)
    assert second and not set(second) & set(first)
    assert all(machine_id.startswith("mdc1:") for machine_id in second)


@pytest.fixture(scope="module")
def troubled_server() -> Iterator[Served]:
    """The app with the realistic fleet: machines with histories, six of them with problems."""
    yield from serve(realistic_fleet)


def test_broken_machines_come_first_with_badges_that_explain_themselves(browser, troubled_server):
    from selenium.webdriver.common.by import By
    browser.get(troubled_server.url + "/")
    attention = [row.get_attribute("data-id") for row in
                 browser.find_elements(By.CSS_SELECTOR, "#section-attention tr.machine")]
    assert attention == list(rows(browser))[:6]
    assert set(attention) == {"mdc2:macmini-r8-33", "mdc1:t-linux64-ms-244", "mdc1:t-linux64-ms-251",
                              "mdc2:t-linux64-ms-518", "mdc1:t-w1064-ms-290", "mdc1:t-w1064-ms-295"}
    badge = browser.find_element(
        By.CSS_SELECTOR, 'tr[data-id="mdc1:t-linux64-ms-244"] [data-problem="consecutive_failures"]')
    assert badge.text == "FAILING"  # upper-cased by the style sheet
    assert "failed or ended in exception" in badge.get_attribute("title")
    # a badge leads to its line in the legend, which says what to do
    badge.click()
    wait_for_url(browser, "#problem-consecutive_failures")
    legend_line = browser.find_element(By.ID, "problem-consecutive_failures")
    assert "quarantine" in legend_line.text
    # badges of different kinds look different
    down = browser.find_element(
        By.CSS_SELECTOR, 'tr[data-id="mdc2:t-linux64-ms-518"] [data-problem="lost_mid_task"]')
    assert down.value_of_css_property("background-color") != badge.value_of_css_property(
        "background-color")


def test_choosing_a_problem_narrows_the_table_and_the_url(browser, troubled_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    browser.get(troubled_server.url + "/")
    Select(browser.find_element(By.ID, "problem")).select_by_value("stale")
    wait_for_url(browser, "problem=stale")
    assert browser.current_url == troubled_server.url + "/?problem=stale"
    assert set(rows(browser)) == {"mdc1:t-linux64-ms-251", "mdc2:t-linux64-ms-518",
                                  "mdc1:t-w1064-ms-295"}


def test_machine_page_shows_its_runs_as_coloured_squares_linked_to_taskcluster(
        browser, troubled_server):
    from selenium.webdriver.common.by import By
    browser.get(troubled_server.url + "/machine/mdc1:t-linux64-ms-244")
    squares = browser.find_elements(By.CSS_SELECTOR, "#strip a.run")
    assert [square.get_attribute("data-outcome") for square in squares] == [
        "completed", "completed", "failed", "completed", "failed", "failed", "exception", "failed",
        "failed"]
    assert all(square.get_attribute("href").startswith(
        "https://firefox-ci-tc.services.mozilla.com/tasks/") for square in squares)
    colours = {square.get_attribute("data-outcome"): square.value_of_css_property("background-color")
               for square in squares}
    assert len(set(colours.values())) == 3
    assert squares[0].size["width"] > 10 and squares[0].size["height"] > 10
    table_rows = browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
    assert len(table_rows) == 9 and table_rows[0].get_attribute("data-outcome") == "failed"
    problems = browser.find_element(By.ID, "problems").text
    assert "What to do:" in problems and "consecutive_failures" in problems
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "machine-problems.png"))


def test_machine_page_fits_a_phone(browser, troubled_server):
    page_width, view_width = widths_on_a_phone(
        browser, troubled_server.url + "/machine/mdc2:t-linux64-ms-518", "machine-phone.png")
    assert page_width <= view_width


def docs_screenshot(path: Path) -> None:
    """Render the dashboard of a realistic fleet into a PNG for the README."""
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    realistic_fleet(Store(redis))
    with Served(redis) as served, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        driver = open_chromium(profile, 1280, 800)
        try:
            driver.get(served.url + "/?sort=lastseen")
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1280, height)
            path.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
        finally:
            driver.quit()


if __name__ == "__main__":
    docs_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "dashboard.png"))


def quarantined_fleet(store: Store) -> None:
    """The realistic fleet with one of its broken machines quarantined in Taskcluster."""
    from releng_hardware.core.records import Quarantine
    from releng_hardware.core.times import format_lastseen
    realistic_fleet(store)
    store.set_quarantine("mdc1:t-linux64-ms-244", Quarantine(
        format_lastseen(NOW + timedelta(days=2)), "bad RAM, bug 1900001", "project/releng/ops",
        f"{PROVISIONER}/gecko-t-linux-talos-1804"))
    store.taskcluster_polled(NOW - timedelta(minutes=1))


@pytest.fixture(scope="module")
def quarantined_server() -> Iterator[Served]:
    """The app with the realistic fleet and one quarantined machine."""
    yield from serve(quarantined_fleet)


def test_a_quarantined_machine_leaves_needs_attention_with_its_badges_and_why(browser,
                                                                             quarantined_server):
    from selenium.webdriver.common.by import By
    browser.get(quarantined_server.url + "/")
    section = [row.get_attribute("data-id") for row in
               browser.find_elements(By.CSS_SELECTOR, "#section-quarantined tr.machine")]
    attention = [row.get_attribute("data-id") for row in
                 browser.find_elements(By.CSS_SELECTOR, "#section-attention tr.machine")]
    assert section == ["mdc1:t-linux64-ms-244"] and section[0] not in attention
    assert len(attention) == 5
    status = browser.find_element(By.CSS_SELECTOR, 'tr[data-id="mdc1:t-linux64-ms-244"] td.status')
    assert status.find_element(By.CSS_SELECTOR, '[data-problem="consecutive_failures"]').is_displayed()
    note = status.find_element(By.CSS_SELECTOR, ".quarantine").text
    assert "quarantined until 2026-11-22 15:00:00 UTC" in note
    assert "bad RAM, bug 1900001" in note and "by project/releng/ops" in note
    browser.find_element(By.CSS_SELECTOR, "#quarantined option[value=true]").click()
    wait_for_url(browser, "quarantined=true")
    assert list(rows(browser)) == ["mdc1:t-linux64-ms-244"]


BAD_PUSH = "test-linux1804-64-shippable-qr/opt-talos-g4-e10s"


def bad_push_fleet(store: Store) -> None:
    """The realistic fleet plus a bad push: one label failing on five linux machines, and passing
    on two windows ones."""
    realistic_fleet(store)
    rng = random.Random(9)
    events = [run("mdc1", f"t-linux64-ms-{number}", "gecko-t-linux-talos-1804",
                  timedelta(minutes=10 + 5 * (number - 260)), "failed", rng)._replace(label=BAD_PUSH)
              for number in range(260, 265)]
    events += [run("mdc1", f"t-w1064-ms-{number}", "gecko-t-win10-64-1803-hw",
                   timedelta(minutes=30), "completed", rng)._replace(label=BAD_PUSH)
               for number in (281, 282)]
    store.record(events, now=NOW)


@pytest.fixture(scope="module")
def bad_push_server() -> Iterator[Served]:
    """The app with the realistic fleet and a bad push."""
    yield from serve(bad_push_fleet)


def test_a_bad_push_shows_in_its_panel_and_on_the_machines_it_failed_on(browser, bad_push_server):
    from selenium.webdriver.common.by import By
    browser.get(bad_push_server.url + "/")
    panel = browser.find_element(By.ID, "labels")
    assert panel.is_displayed()
    assert panel.find_element(By.ID, "labels-title").text.startswith("Failing on several machines")
    (row,) = panel.find_elements(By.CSS_SELECTOR, "tbody tr")
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    assert cells[:4] == [BAD_PUSH, "gecko-t-linux-talos-1804 gecko-t-win10-64-1803-hw", "5", "2"]
    assert row.find_element(By.CSS_SELECTOR, "td:last-child a").get_attribute("href").startswith(
        "https://firefox-ci-tc.services.mozilla.com/tasks/")
    # the panel comes before the machines, none of which needs attention for the bad push
    assert panel.location["y"] < browser.find_element(By.ID, "machines").location["y"]
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-id="mdc1:t-linux64-ms-260"] .problem')
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-labels.png"))
    browser.get(bad_push_server.url + "/machine/mdc1:t-linux64-ms-260")
    peers = browser.find_element(By.CSS_SELECTOR, "#runs-table tbody tr td.peers").text
    assert peers == "also failed on 4 other machines"
    assert browser.save_screenshot(str(ARTIFACTS / "machine-labels.png"))
