"""The machine index's exactness on fakeredis: the tests of tests/index_exactness.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_config
from tests.index_exactness import (  # noqa: F401 - the shared tests, collected here
    PROVISIONER, test_a_judgement_of_a_machine_written_since_is_not_stored,
    test_a_slow_judgement_of_an_older_record_fails_after_a_judged_machine_is_written_again,
    test_changed_thresholds_judge_every_machine_again,
    test_machines_written_before_the_index_are_indexed_on_first_read,
    test_retention_inventory_quarantines_preload_and_backfill_keep_it_exact,
    test_the_dashboard_pages_from_the_index_are_those_of_every_machine,
    test_the_index_counts_what_judging_every_machine_counts, test_the_scripts_order_times_as_python_does)


@pytest.fixture
def config() -> Any:
    return make_config(provisioner_ids=(PROVISIONER,))
