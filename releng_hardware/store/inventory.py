"""The store's inventory: the machines that should exist, replaced whole by a load."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .base import StorePart


def decode_inventory(stored: Mapping[str, str]) -> dict[str, str | None]:
    """The inventory as stored: machine id -> worker type or None."""
    # "" stands for "no worker type": a worker type is never empty
    return {machine_id: worker_type or None for machine_id, worker_type in stored.items()}


class InventoryPart(StorePart):
    """The inventory, and the machine ids a hostname has."""

    def update_inventory(
        self, decide: Callable[[dict[str, str | None]], Mapping[str, str | None] | None],
        chunk: int = 5000,
    ) -> None:
        """Replace the inventory with decide(current inventory) in one transaction.

        decide returns the whole new inventory, or None to write nothing; it may raise
        to refuse. It runs again if another load changes the inventory meanwhile, so the
        web sees the old inventory or the new one, never a mix.
        """
        # Any: redis-py's Pipeline is not generic over the decoded replies it gives here
        def apply(pipe: Any) -> None:
            current = decode_inventory(pipe.hgetall(self.keys.inventory))
            after = decide(current)
            if after is None or after == current:
                return
            items = [(machine_id, worker_type or "") for machine_id, worker_type in after.items()]
            pipe.multi()
            pipe.delete(self.keys.inventory)
            for start in range(0, len(items), chunk):
                pipe.hset(self.keys.inventory, mapping=dict(items[start:start + chunk]))
            pipe.incr(self.keys.version)
        self._all_or_nothing(apply, self.keys.inventory)

    def inventory(self) -> dict[str, str | None]:
        """The machines that should exist: id -> worker type or None; empty when none is loaded."""
        stored: dict[str, str] = self.redis.hgetall(self.keys.inventory)  # type: ignore[assignment]
        return decode_inventory(stored)

    def inventory_lists(self, machine_ref: str) -> bool | None:
        """Whether the inventory lists `<dc>:<host>`, or a machine of a bare hostname; None
        when no inventory is loaded."""
        if ":" in machine_ref:
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(self.keys.inventory)
            pipe.hexists(self.keys.inventory, machine_ref)
            loaded, listed = pipe.execute()
            return bool(listed) if loaded else None
        if not self.redis.exists(self.keys.inventory):
            return None
        return any(True for _ in self.redis.hscan_iter(self.keys.inventory, match=f"*:{machine_ref}",
                                                       count=1000))

    def machine_ids_for_hostname(self, hostname: str) -> list[str]:
        """Every `$DC:hostname` id seen for a hostname (several when datacenters share one)."""
        return sorted(machine_id for machine_id, _ in self.redis.hscan_iter(
            self.keys.machines, match=f"*:{hostname}", count=1000))
