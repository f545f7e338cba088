"""The machine index's exactness on fakeredis: the tests of tests/index_exactness.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_config
from tests.index_exactness import *  # noqa: F403 - the shared tests, collected here
from tests.index_exactness import PROVISIONER


@pytest.fixture
def config() -> Any:
    return make_config(provisioner_ids=(PROVISIONER,))
