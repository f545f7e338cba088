"""What the browser tests share: the app served over HTTP, and headless Chromium to look at it."""

from __future__ import annotations

import shutil
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import fakeredis

from releng_hardware.core.config import Config
from releng_hardware.store.machines import Store
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NOW = datetime(2026, 11, 20, 15, 0, 0)
WAIT_SECONDS = 10


def require_chromium() -> None:
    """Skip without Chromium and its driver, except under CI, where that fails the run."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    require(not missing, f"{' and '.join(missing)} not installed", "CI must run the browser tests",
            "`scripts/setup --browser` installs Debian's chromium and chromium-driver")


class Served:
    """The real app behind werkzeug's HTTP server on a free local port, in a thread."""

    def __init__(self, redis: Any) -> None:
        from werkzeug.serving import make_server

        from releng_hardware.web.app import create_app
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


def serve(fill: Callable[[Store], None]) -> Iterator[Served]:
    """The app over a fresh fake Redis that `fill` wrote a fleet into, served until closed."""
    require_chromium()
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    fill(Store(redis))
    with Served(redis) as served:
        yield served


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
