"""Replay's memory over months of new task ids: peak memory after 180 days over after 30.

The stream is ``benchmarks.fleet_history.FleetHistory`` (a 1,000-node fleet in slots of 8 running
jobs back to back: about 2,000 new task ids a day, restarts under the same job id, the recovery's
events), fed to ``replay.rebuild.rebuild`` as a 4-shard stream would deliver it.

Memory is the peak resident set of a child process that does only this: the kernel's high-water
mark, ``VmHWM`` in ``/proc/self/status``, read once when the first record of day 30 arrives (the peak
over days 0-30) and once at the end (days 0-180); one pass gives both, as two runs of the same seeded
history would. (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is the same mark, but Linux carries it
over ``exec`` from the forked parent: under the suite it reported the suite's own 122 MiB.)
The figure is taken over what the replay added: each peak less the resident set just before the
replay started (the interpreter, pydantic and the imported modules, ~45 MiB that would otherwise
dilute the ratio); the whole peaks are reported beside it. (tracemalloc, Python's own allocations,
gave 1.11 where this gave 1.16 on 50 nodes over 90 days, but slows the fold about sevenfold.)

Baselines, from the same pass: the live tables' item count under DynamoDB's TTL (what the fold holds)
at day 180 over day 30, and the items a replay without expiry would hold (every task and job ever
launched, plus the nodes) over the same days.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.fleet_history import FleetHistory
from benchmarks.stats import Figure, Target, figure, progress, rounded
from consumers.core.projection import ProjectionConfig, ProjectionState
from events_schema.decode import StreamEvent
from replay.retention import Retention
from replay.sources import RawRecord

TARGET_GROWTH = Target("<=", 1.2)
MIB = 2**20


@dataclass
class _Watched(Retention):
    """Retention that keeps a reference to the fold's state, so the benchmark can count its items."""

    state: ProjectionState | None = None

    def fold(self, state: ProjectionState, event: StreamEvent, position: str) -> None:
        self.state = state
        super().fold(state, event, position)


@dataclass
class Mark:
    day: int
    peak_bytes: int
    items: int
    pending_expiries: int
    tasks_launched: int
    jobs_launched: int
    records: int


def _marked(history: FleetHistory, kept: _Watched, at_day: int, marks: list[Mark]) -> Iterator[RawRecord]:
    """The history's records; the first record of ``at_day`` notes the peak so far (days 0..at_day)."""
    records = 0
    for day, record in history:
        if not marks and day >= at_day:
            marks.append(_mark(at_day, history, kept, records))
        records += 1
        yield record
    marks.append(_mark(history.days, history, kept, records))


def _mark(day: int, history: FleetHistory, kept: _Watched, records: int) -> Mark:
    items = len(kept.state.items) if kept.state is not None else 0
    return Mark(day, _peak_bytes(), items, kept.pending, history.launched_tasks, history.launched_jobs, records)


def _peak_bytes() -> int:
    return _status_bytes("VmHWM")


def _resident_bytes() -> int:
    return _status_bytes("VmRSS")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


def measure(nodes: int, days: tuple[int, int]) -> dict[str, Any]:
    """In this process (a fresh child): replay ``days[1]`` days of a ``nodes``-node fleet; the marks."""
    from replay.rebuild import rebuild

    config = ProjectionConfig()
    rebuild((r for _, r in FleetHistory(nodes=64, days=2)), config)  # import and warm every validator
    gc.collect()
    kept = _Watched(config)
    history = FleetHistory(nodes=nodes, days=days[1])
    marks: list[Mark] = []
    before = _resident_bytes()
    started = time.perf_counter()
    rebuilt = rebuild(_marked(history, kept, days[0], marks), config, retention=kept)
    return {"resident_before_bytes": before, "at_short": asdict(marks[0]), "at_long": asdict(marks[1]),
            "seconds": rounded(time.perf_counter() - started), "cpu_seconds": rounded(time.process_time()),
            "records": rebuilt.stats.records, "expired": kept.expired, "late_dropped": kept.late_dropped,
            "items_per_table": rebuilt.items_per_table(), "malformed": sum(rebuilt.stats.malformed.values())}


def _child(nodes: int, days: tuple[int, int]) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.replay_memory", str(nodes), str(days[0]), str(days[1])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the memory replay failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bench_replay_memory_growth(nodes: int, runs: int = 1, days: tuple[int, int] = (30, 180)) -> dict[str, Figure]:
    """``replay.memory_growth_180d``: the replay's peak memory after ``days[1]`` days over after ``days[0]``."""
    growth: list[float] = []
    passes: list[dict[str, Any]] = []
    for run in range(runs):
        progress(f"replay memory: run {run + 1}/{runs}: {days[1]} days of a {nodes}-node fleet in a child process")
        one = _child(nodes, days)
        before = one["resident_before_bytes"]
        growth.append((one["at_long"]["peak_bytes"] - before) / (one["at_short"]["peak_bytes"] - before))
        passes.append(one)
    short_mark, long_mark = passes[0]["at_short"], passes[0]["at_long"]
    unbounded = [m["tasks_launched"] + m["jobs_launched"] + nodes for m in (short_mark, long_mark)]
    base = {
        "what": "items the live tables hold under DynamoDB's TTL (the retained fold's items), "
                f"day {days[1]} over day {days[0]}, same pass",
        "label": "live tables' items under TTL",
        "median": rounded(long_mark["items"] / short_mark["items"]), "unit": "ratio",
        "without_expiry_items_growth": rounded(unbounded[1] / unbounded[0]),
        "without_expiry_items": {str(days[0]): unbounded[0], str(days[1]): unbounded[1]},
    }
    inputs: dict[str, Any] = {
        "nodes": nodes, "ranks_per_job": 8, "days": list(days), "runs": runs,
        "source": "benchmarks.fleet_history.FleetHistory (seeded), 4 shards by node",
        "measure": "peak RSS of a child process (VmHWM, /proc/self/status), less its resident set just "
                   "before the replay",
        "new_task_ids_per_day": rounded(long_mark["tasks_launched"] / days[1]),
        "records_per_day": rounded(long_mark["records"] / days[1]),
        "ttl_days": ProjectionConfig().ttl_days, "per_run": passes,
    }
    out = figure(growth, unit="ratio", inputs=inputs, target=TARGET_GROWTH, baseline=base,
                 note=f"peak memory the replay added over days 0-{days[1]} over days 0-{days[0]}")
    before = passes[0]["resident_before_bytes"]
    out["peak_mib"] = {"before_replay": rounded(before / MIB),
                       str(days[0]): rounded(short_mark["peak_bytes"] / MIB),
                       str(days[1]): rounded(long_mark["peak_bytes"] / MIB)}
    out["whole_process_growth"] = rounded(long_mark["peak_bytes"] / short_mark["peak_bytes"])
    return {"replay.memory_growth_180d": out}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), (int(sys.argv[2]), int(sys.argv[3])))))
