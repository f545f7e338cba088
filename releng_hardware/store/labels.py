"""The store's labels: which labels failed lately, and a machine's runs with their label's
name and peers (peers decodes what a label holds)."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping

from . import history, peers
from .base import StorePart
from ..core.records import Run


def with_peers(machine_id: str, runs: tuple[Run, ...], labels: Mapping[str, str | None],
               peer_window: float) -> tuple[Run, ...]:
    """The runs with their label's name and, for resolved ones, their peers counted within
    `peer_window` seconds; `labels` holds the stored string of each label they name (None:
    expired)."""
    if not labels:
        return runs
    # each label decoded once, however many of the runs name it
    stored = {ref: peers.decode_label_marks(raw) for ref, raw in labels.items()}
    window_ms = int(peer_window * 1000)
    found = []
    for run in runs:
        if run.label is None:
            found.append(run)
            continue
        name, label_runs = stored.get(run.label, ("", []))
        if not name:
            found.append(run._replace(label=None))
            continue
        latest = run.resolved or run.started
        counted = None if latest is None else peers.peer_counts(peers.peer_runs(
            label_runs, machine_id, history.entry_time(datetime.fromisoformat(latest)),
            window_ms))
        found.append(run._replace(label=name, peers=counted))
    return tuple(found)


class LabelsPart(StorePart):
    """The labels that failed within PEER_WINDOW."""

    def failing_labels(self, now: datetime) -> list[tuple[str, list[peers.PeerRun]]]:
        """Every label with a failure within PEER_WINDOW before `now`: (label, its runs)."""
        since = history.entry_time(now) - int(self.peer_window * 1000)
        refs: list[str] = self.redis.zrangebyscore(self.keys.labels, since, "+inf")  # type: ignore[assignment]
        if not refs:
            return []
        raws: list[str | None] = self.redis.mget([self.keys.label(ref) for ref in refs])  # type: ignore[assignment]
        found = (peers.decode_label(raw) for raw in raws)
        return [(name, runs) for name, runs in found if name]
