"""Where a job's ranks go when it restarts: pure first-fit over GPU capacity.

Each rank goes back on its own node when that node is eligible and has room, otherwise on a spare: the
job's own idle nodes first, then nodes with no recent fault, least recently faulted first, then by
ARN (a stable order, so two runs decide alike). A node never gets more ranks than its free GPUs hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RankNeed:
    task_arn: str
    home: str | None
    gpus: int


@dataclass(frozen=True)
class Candidate:
    arn: str
    free: int
    own: bool = False
    last_fault: str = ""


def assign(ranks: Sequence[RankNeed], candidates: Sequence[Candidate], recent_since: str) -> list[str] | None:
    """The node of each rank, in order; None when some rank has no room anywhere."""
    free = {c.arn: c.free for c in candidates}
    chosen: list[str | None] = [None] * len(ranks)
    for i, rank in enumerate(ranks):
        if rank.home is not None and free.get(rank.home, 0) >= rank.gpus:
            chosen[i] = rank.home
            free[rank.home] -= rank.gpus
    spares = sorted(candidates, key=lambda c: (not c.own, c.last_fault >= recent_since, c.last_fault, c.arn))
    for i, rank in enumerate(ranks):
        if chosen[i] is not None:
            continue
        spare = next((c.arn for c in spares if free[c.arn] >= rank.gpus), None)
        if spare is None:
            return None
        chosen[i] = spare
        free[spare] -= rank.gpus
    return [node for node in chosen if node is not None]
