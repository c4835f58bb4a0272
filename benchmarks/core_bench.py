"""The pure core in one process: decode + validate + fold, versus ``json.loads`` alone on the same bytes.

The records are a GPU cluster's live stream as ``benchmarks.records.fleet_stream`` makes it with the
fleet simulator (``local.fleet``): task and container-instance events exactly as the simulator emits
them and the local EventBridge puts them (compact JSON), jobs of 8 ranks launching, completing, failing
and restarting, and our own envelopes where recovery acts (job and node states, decisions, outcomes,
health reports): bytes as they sit in the stream.

Both sides are single-threaded and CPU-bound, so they are timed in CPU seconds of this process
(steady on a shared machine); wall seconds are reported beside them.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from typing import Any

from benchmarks.records import fleet_stream
from benchmarks.stats import Figure, Target, baseline, figure, pair_ratios, progress, rounded, timed

TARGET_RATIO = Target(">=", 0.25)
FLEET = {"nodes": 64, "ranks": 8}


def _mix(records: list[bytes]) -> dict[str, int]:
    """How many records of each kind the stream holds."""
    kinds: Counter[str] = Counter()
    for record in records:
        raw = json.loads(record)
        kinds[str(raw.get("detail-type") or raw.get("type"))] += 1
    return dict(kinds.most_common())


def json_only(records: list[bytes]) -> int:
    loads = json.loads
    for record in records:
        loads(record)
    return len(records)


def decode_and_fold(records: list[bytes]) -> Any:
    from consumers.core.projection import ProjectionConfig, ProjectionState, fold
    from events_schema.decode import MalformedRecord, decode

    state, config = ProjectionState(), ProjectionConfig()
    for record in records:
        try:
            event = decode(record)
        except MalformedRecord:
            continue  # parked by the projector; counted in the time like any other record
        fold(state, event, config)
    return state


def bench_core(n_records: int = 20_000, runs: int = 5) -> dict[str, Figure]:
    """``core.events_per_s`` and ``core.ratio_vs_json_loads``, pair by pair over ``runs`` runs."""
    records = fleet_stream(n_records, nodes=FLEET["nodes"], ranks=FLEET["ranks"])
    decode_and_fold(records[:2000])  # import and warm the pydantic validators before timing
    fold_cpu: list[float] = []
    fold_wall: list[float] = []
    json_cpu: list[float] = []
    json_wall: list[float] = []
    for run in range(runs):
        progress(f"core: run {run + 1}/{runs}: decode+fold and json.loads on {n_records} records")
        # Alternate which side goes first, so drift on a shared machine does not favour one.
        order = ("json", "fold") if run % 2 == 0 else ("fold", "json")
        for side in order:
            if side == "json":
                wall, cpu, _ = timed(lambda: json_only(records))
                json_wall.append(wall)
                json_cpu.append(cpu)
            else:
                wall, cpu, _ = timed(lambda: decode_and_fold(records))
                fold_wall.append(wall)
                fold_cpu.append(cpu)
    inputs = {
        "records": n_records, "bytes": sum(len(r) for r in records), "source": "benchmarks.records.fleet_stream",
        "fleet": FLEET, "mix": _mix(records), "runs": runs, "timer": "process CPU seconds",
    }
    json_rate = [n_records / s for s in json_cpu]
    fold_rate = [n_records / s for s in fold_cpu]
    base = baseline("json.loads alone on the same records", json_rate, "events per CPU second", "json.loads")
    base["wall_events_per_s_median"] = rounded(statistics.median(n_records / s for s in json_wall))
    events = figure(fold_rate, unit="events per CPU second", inputs=inputs, baseline=base)
    events["wall_events_per_s"] = figure([n_records / s for s in fold_wall], unit="events/s", inputs={})
    events["wall_events_per_s"].pop("inputs")
    ratio = figure(pair_ratios(fold_rate, json_rate), unit="ratio", inputs=inputs, target=TARGET_RATIO,
                   baseline=base, note="events/s of decode+validate+fold over events/s of json.loads, run by run")
    return {"core.events_per_s": events, "core.ratio_vs_json_loads": ratio}
