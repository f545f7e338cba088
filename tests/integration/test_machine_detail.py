"""/machines/<id>'s one-round-trip read (lua/machine_detail.lua) on the real Redis gives the
detail the store's separate reads give (tests/unit/test_machine_detail.py's machines)."""

from __future__ import annotations

import pytest

from releng_hardware.views.reads import read_machine
from tests.conftest import NOW, make_config
from tests.unit.views.test_machine_detail import MACHINE, SHOWN, detail_read_apart, fill, runs_read_apart


@pytest.mark.parametrize("machine_id", [MACHINE, "mdc1:ms-2", "mdc1:ms-3"])
def test_one_read_gives_the_detail_the_separate_reads_give(real_store, machine_id):
    fill(real_store)
    config = make_config(recent_tasks=SHOWN)
    read = real_store.machine_detail(machine_id, NOW, runs=SHOWN)
    assert read_machine(real_store, config, read, NOW) == detail_read_apart(real_store, config,
                                                                           machine_id, NOW)
    assert real_store.machine(machine_id).history == runs_read_apart(real_store, machine_id)


def test_a_machine_never_seen_is_read_with_whether_the_inventory_lists_it(real_store):
    fill(real_store)
    assert real_store.machine_detail("mdc1:ms-never", NOW, runs=SHOWN)[:2] == (None, True)
    assert real_store.machine_detail("mdc2:ms-1", NOW, runs=SHOWN)[:2] == (None, False)
