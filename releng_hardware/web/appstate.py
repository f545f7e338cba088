"""What create_app gives every view: the store, the settings, the clock and the version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from flask import Flask, current_app

from ..core.config import Config
from ..store.machines import Store

# The key of the application's state in Flask's app.extensions.
EXTENSION = "releng_hardware"


@dataclass(frozen=True)
class AppState:
    """The application's dependencies, set once by create_app."""

    store: Store
    config: Config
    clock: Callable[[], datetime]  # the views' `now`: tests pass a fixed one
    version: dict[str, str]  # /__version__, read once at start-up


def install(app: Flask, state: AppState) -> None:
    """Give the app its state (create_app does, once)."""
    app.extensions[EXTENSION] = state


def app_state() -> AppState:
    """The state of the application handling the current request."""
    state: AppState = current_app.extensions[EXTENSION]
    return state
