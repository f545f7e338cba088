"""The dashboard with an inventory loaded, in Debian's headless Chromium."""

from __future__ import annotations

from typing import Iterator

import pytest

from releng_hardware.store.machines import Store
from tests.browser.support import Served, rows, serve, wait_for_url
from tests.browser.test_dashboard_browser import small_fleet


def fleet_with_inventory(store: Store) -> None:
    """The small fleet, and an inventory listing two of its machines and two never seen."""
    small_fleet(store)
    store.update_inventory(lambda current: {
        "mdc1:t-linux64-ms-100": "gecko-t-linux-talos", "mdc1:t-linux64-ms-102": "gecko-t-linux-talos",
        "mdc1:t-linux64-ms-103": "gecko-t-linux-talos", "mdc2:t-w1064-ms-299": "gecko-t-win10-64-hw"})


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """The app with the small fleet and its inventory, served over HTTP for the module."""
    yield from serve(fleet_with_inventory)


def test_never_seen_machines_are_listed_with_the_others_and_painted(browser, server):
    from selenium.webdriver.common.by import By
    browser.get(server.url + "/")
    found = rows(browser)
    assert {"mdc1:t-linux64-ms-103", "mdc2:t-w1064-ms-299"} <= set(found)
    assert "never-seen" in found["mdc1:t-linux64-ms-103"]
    never = browser.find_element(By.CSS_SELECTOR, 'tr[data-id="mdc1:t-linux64-ms-103"] td.lastseen')
    fresh = browser.find_element(By.CSS_SELECTOR, 'tr[data-id="mdc1:t-linux64-ms-100"] td.lastseen')
    assert never.text == "never"
    assert never.value_of_css_property("background-color") != fresh.value_of_css_property(
        "background-color")


def test_the_never_seen_total_lists_only_them_and_the_datacenter_filter_keeps_them(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    browser.get(server.url + "/")
    browser.find_element(By.ID, "never-seen").click()
    wait_for_url(browser, "problem=never_seen")
    assert list(rows(browser)) == ["mdc1:t-linux64-ms-103", "mdc2:t-w1064-ms-299"]
    browser.get(server.url + "/")
    Select(browser.find_element(By.ID, "datacenter")).select_by_value("mdc2")
    wait_for_url(browser, "datacenter=mdc2")
    assert list(rows(browser)) == ["mdc2:t-w1064-ms-281", "mdc2:t-w1064-ms-299"]
