"""What every part of the store shares (store.base) on fakeredis: how a store is built."""

from __future__ import annotations

from releng_hardware.store.machines import Store
from releng_hardware.store.quarantines import QuarantinesPart
from releng_hardware.core.records import Quarantine
from tests.conftest import make_config


def test_a_store_from_config_has_its_prefix_and_settings(fake_redis):
    config = make_config(redis_key_prefix="fleet:", recent_tasks=40, peer_window=120.0,
                         peer_failures=5)
    store = Store.from_config(config, fake_redis)
    by_hand = Store(fake_redis, "fleet:", recent_tasks=40, peer_window=120.0, peer_failures=5)
    assert isinstance(store, Store) and store.redis is fake_redis
    assert (store.prefix, store.keys.machines, store.history_size, store.peer_window,
            store._peer_settings) == (by_hand.prefix, by_hand.keys.machines,
                                      by_hand.history_size, by_hand.peer_window,
                                      by_hand._peer_settings)
    assert store.keys.machines == "fleet:machines"


def test_a_part_alone_has_its_own_scripts_and_keeps_what_the_store_reads(fake_redis):
    part = QuarantinesPart.from_config(make_config(redis_key_prefix="fleet:"), fake_redis)
    assert not hasattr(part, "_record_batch")
    quarantine = Quarantine("2026-12-01T00:00:00.000000", "broken disk", "someone", "")
    assert part.replace_quarantines("releng-hardware/t", {"mdc1:t-1": quarantine}) == 1
    assert Store(fake_redis, "fleet:").quarantines() == {
        "mdc1:t-1": quarantine._replace(queue="releng-hardware/t")}
