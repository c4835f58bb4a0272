"""The pure core in one process: decode + validate + fold, versus parsing alone on the same bytes.

Two baselines, interleaved with the candidate run by run: ``pydantic_core.from_json`` (the parser the
decoder itself uses, the strongest: ``core.ratio_vs_from_json``) and ``json.loads``
(``core.ratio_vs_json_loads``, kept for comparison with earlier runs; it flatters the decoder).

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
from functools import partial
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


def from_json_only(records: list[bytes]) -> int:
    from pydantic_core import from_json

    for record in records:
        from_json(record)
    return len(records)


def decode_only(records: list[bytes]) -> int:
    from events_schema.decode import MalformedRecord, decode

    for record in records:
        try:
            decode(record)
        except MalformedRecord:
            continue
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


SIDES: dict[str, Any] = {"json": json_only, "from_json": from_json_only, "decode": decode_only,
                         "fold": decode_and_fold}


def bench_core(n_records: int = 20_000, runs: int = 5) -> dict[str, Figure]:
    """``core.events_per_s``, ``core.ratio_vs_from_json`` and ``core.ratio_vs_json_loads``, run by run."""
    records = fleet_stream(n_records, nodes=FLEET["nodes"], ranks=FLEET["ranks"])
    decode_and_fold(records[:2000])  # import and warm the pydantic validators before timing
    from_json_only(records[:2000])
    cpu: dict[str, list[float]] = {side: [] for side in SIDES}
    wall: dict[str, list[float]] = {side: [] for side in SIDES}
    for run in range(runs):
        progress(f"core: run {run + 1}/{runs}: decode+fold, pydantic_core.from_json and json.loads on {n_records} "
                 "records")
        # Rotate which side goes first, so drift on a shared machine does not favour one.
        order = list(SIDES)[run % len(SIDES):] + list(SIDES)[:run % len(SIDES)]
        for side in order:
            seconds, cpu_seconds, _ = timed(partial(SIDES[side], records))
            wall[side].append(seconds)
            cpu[side].append(cpu_seconds)
    inputs = {
        "records": n_records, "bytes": sum(len(r) for r in records), "source": "benchmarks.records.fleet_stream",
        "fleet": FLEET, "mix": _mix(records), "runs": runs, "timer": "process CPU seconds",
    }
    rate = {side: [n_records / s for s in cpu[side]] for side in SIDES}
    base_json = _base("json.loads alone on the same records", rate["json"], wall["json"], n_records, "json.loads")
    base_fast = _base("pydantic_core.from_json alone on the same records (the decoder's own parser)",
                      rate["from_json"], wall["from_json"], n_records, "pydantic_core.from_json")
    inputs["where_the_time_goes"] = {
        "decode_alone_over_from_json": rounded(statistics.median(pair_ratios(rate["decode"], rate["from_json"]))),
        "decode_share_of_decode_and_fold": rounded(statistics.median(
            pair_ratios(cpu["decode"], cpu["fold"]))),
        "what": "decode alone (events_schema.decode.decode, no fold) timed as a fourth side, run by run",
    }
    events = figure(rate["fold"], unit="events per CPU second", inputs=inputs, baseline=base_fast)
    events["wall_events_per_s"] = figure([n_records / s for s in wall["fold"]], unit="events/s", inputs={})
    events["wall_events_per_s"].pop("inputs")
    return {
        "core.events_per_s": events,
        "core.ratio_vs_from_json": figure(
            pair_ratios(rate["fold"], rate["from_json"]), unit="ratio", inputs=inputs, target=TARGET_RATIO,
            baseline=base_fast, note="events/s of decode+validate+fold over events/s of pydantic_core.from_json, "
            "run by run"),
        "core.ratio_vs_json_loads": figure(
            pair_ratios(rate["fold"], rate["json"]), unit="ratio", inputs=inputs, target=TARGET_RATIO,
            baseline=base_json, note="events/s of decode+validate+fold over events/s of json.loads, run by run "
            "(flatters the decoder: see core.ratio_vs_from_json)"),
    }


def _base(what: str, rates: list[float], walls: list[float], n_records: int, label: str) -> dict[str, Any]:
    out = baseline(what, rates, "events per CPU second", label)
    out["wall_events_per_s_median"] = rounded(statistics.median(n_records / s for s in walls))
    return out
