"""A virtual clock for the local stack: the simulator and the deadline ticker share it, so a
15-minute reboot deadline passes in milliseconds of a demo."""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class VirtualClock:
    def __init__(self, start: datetime | None = None, *, wall: Callable[[], float] = time.time) -> None:
        self._now = start or datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
        self._wall = wall
        # When it moved, by the wall clock: what Kinesis stamps on a record (its arrival) is wall time.
        self._walls: list[float] = [wall()]
        self._moments: list[datetime] = [self._now]

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        self._moved()
        return self._now

    def advance_to(self, moment: datetime) -> datetime:
        if moment > self._now:
            self._now = moment
            self._moved()
        return self._now

    def at_wall(self, wall_seconds: float) -> datetime:
        """What this clock said at a wall-clock time (epoch seconds): a record that arrived then arrived,
        for the consumers on this clock, at that virtual time."""
        index = bisect_right(self._walls, wall_seconds) - 1
        return self._moments[max(index, 0)]

    def _moved(self) -> None:
        self._walls.append(self._wall())
        self._moments.append(self._now)
