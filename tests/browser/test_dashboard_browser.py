"""The dashboard in Debian's headless Chromium, served by a real HTTP server over fakeredis.

`python -m tests.browser.test_dashboard_browser docs/dashboard.png` renders the README's
screenshot from a realistic fleet.
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import fakeredis
import pytest

from releng_hardware.config import Config
from releng_hardware.events import PendingEvent, WorkerEvent
from releng_hardware.store import Store
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NOW = datetime(2026, 11, 20, 15, 0, 0)
PROVISIONER = "releng-hardware"
WAIT_SECONDS = 10

pytestmark = pytest.mark.browser


def require_chromium() -> None:
    """Skip without Chromium and its driver, except under CI, where that fails the run."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    require(not missing, f"{' and '.join(missing)} not installed", "CI must run the browser tests",
            "`scripts/setup --browser` installs Debian's chromium and chromium-driver")


def slugid(rng: random.Random) -> str:
    """A random id in Taskcluster's slugid shape."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return ("".join(rng.choice(alphabet) for _ in range(8)) + rng.choice("QRST")
            + rng.choice(alphabet) + rng.choice("CGKOSWaeimquy26-")
            + "".join(rng.choice(alphabet) for _ in range(10)) + rng.choice("AQgw"))


def run(datacenter: str, host: str, worker_type: str, ago: timedelta, state: str,
        rng: random.Random, reason: str | None = None) -> WorkerEvent:
    """One run of a machine, `ago` before NOW."""
    return WorkerEvent(datacenter, host, PROVISIONER, worker_type, slugid(rng), 0, state,
                       None if state == "running" else (reason or state), NOW - ago,
                       NOW + timedelta(days=1), True)


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
    for datacenter, numbers in (("mdc1", range(240, 247)), ("mdc2", range(512, 516))):
        for number in numbers:
            minutes = rng.choice([1, 2, 3, 6, 9, 14, 23, 41])
            events.append(run(datacenter, f"t-linux64-ms-{number}", linux, timedelta(minutes=minutes),
                              rng.choice(["running", "completed", "completed", "failed"]), rng))
    for number in (281, 282, 283, 290):
        events.append(run("mdc1", f"t-w1064-ms-{number}", windows,
                          timedelta(minutes=rng.choice([2, 5, 12, 30])),
                          rng.choice(["running", "completed"]), rng))
    for number in (31, 32, 33):
        events.append(run("mdc2", f"macmini-r8-{number}", mac, timedelta(minutes=rng.choice([3, 8, 17])),
                          "completed", rng))
    # the ones someone should look at
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


class Served:
    """The real app behind werkzeug's HTTP server on a free local port, in a thread."""

    def __init__(self, redis: Any) -> None:
        from werkzeug.serving import make_server

        from releng_hardware.web import create_app
        app = create_app(Config(), redis=redis, clock=lambda: NOW)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Served":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def open_chromium(user_data_dir: str, width: int = 1280, height: int = 900) -> Any:
    """Headless Chromium that talks to nothing but the test server."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """The app with the small fleet, served over HTTP for the whole module."""
    require_chromium()
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    small_fleet(Store(redis))
    with Served(redis) as served:
        yield served


@pytest.fixture(scope="module")
def browser(server: Served) -> Iterator[Any]:
    """One headless Chromium for the module, with its own throw-away profile."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        driver = open_chromium(profile)
        driver.set_page_load_timeout(WAIT_SECONDS)
        try:
            yield driver
        finally:
            driver.quit()


def rows(browser: Any) -> dict[str, list[str]]:
    """Machine id -> classes of its row, in table order."""
    from selenium.webdriver.common.by import By
    return {row.get_attribute("data-id"): row.get_attribute("class").split()
            for row in browser.find_elements(By.CSS_SELECTOR, "#machines tbody tr.machine")}


def wait_for_url(browser: Any, fragment: str) -> None:
    """Wait until the browser has navigated to a URL containing `fragment`."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda driver: fragment in driver.current_url and driver.execute_script(
            "return document.readyState") == "complete")


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


def test_on_a_phone_only_the_tables_scroll_sideways(browser, server):
    browser.set_window_size(390, 844)
    try:
        browser.get(server.url + "/")
        page_width, view_width = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert page_width <= view_width
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-phone.png"))
    finally:
        browser.set_window_size(1280, 900)


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
    require_chromium()
    from releng_hardware.dashboard import PAGE_SIZE
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    Store(redis).preload({
        f"mdc{1 + number % 2}:t-linux64-ms-{number:04}":
            NOW - (timedelta(days=1) if number % 20 == 0 else timedelta(minutes=number % 50))
        for number in range(2 * PAGE_SIZE + PAGE_SIZE // 2)})
    with Served(redis) as served:
        yield served


def test_a_big_fleet_opens_on_its_first_page_and_pages_keep_the_filters(browser, big_server):
    from selenium.webdriver.common.by import By

    from releng_hardware.dashboard import PAGE_SIZE
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
