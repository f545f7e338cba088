"""The browser tests' fixtures: one headless Chromium per module, looking at the module's `server`."""

from __future__ import annotations

import tempfile
from typing import Any, Iterator

import pytest

from tests.browser.support import WAIT_SECONDS, Served, open_chromium


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
