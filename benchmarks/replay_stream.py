"""Replay from a stream against the fastest bare read of the same records, in the same run.

``n`` records of the replay benchmark's history (``replay_bench.History``: 2,000 nodes, 500 jobs, 40% our
own events, 1% unknown types) are put in a 4-shard stream on the embedded AWS. Then, in rounds, four
sides read every record of every shard through ``replay.sources.open_source`` (the public way in, so a
change inside the readers is measured as it is):

* bare read, threads: the reader in threads of this process, only counting records (the fastest);
* bare read, process: the child-process reader ``gpu-recovery replay`` uses by default, only counting;
* replay, process (the candidate): what ``gpu-recovery replay --target file:...`` does by default:
  ``replay.rebuild.rebuild`` (decode, fold, expire) through the child-process reader, then the state
  written to a file;
* replay, threads: the same through the in-process reader (``--reader thread``).

The order of the sides rotates from round to round. Each round gives ratios of rates (records/s, wall
clock: reading is I/O and CPU in two processes): replay over the faster of the two bare reads
(``replay.ratio_vs_fastest_read``) and, as before, replay over the bare read through its own reader
(``replay.ratio_vs_bare_read``, which flatters it: that reader is the slower one).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.stats import Figure, Target, baseline, figure, pair_ratios, progress, rounded

TARGET_RATIO = Target(">=", 0.8)
SHARDS = 4
SIDES = ("bare_thread", "bare_process", "replay_process", "replay_thread")
REGION = "us-east-1"


def kinesis_client(endpoint_url: str) -> Any:
    """Module-level, so the child-process reader can unpickle a partial of it."""
    import boto3

    return boto3.client("kinesis", endpoint_url=endpoint_url, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


class StreamSides:
    """The four sides over one filled stream."""

    def __init__(self, endpoint_url: str, n_records: int) -> None:
        from benchmarks.replay_bench import _fill_stream

        self.endpoint_url, self.n_records = endpoint_url, n_records
        self.kinesis = kinesis_client(endpoint_url)
        self.stream = f"replay-bench-{uuid.uuid4().hex[:8]}"
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=SHARDS)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=self.stream, WaiterConfig={"Delay": 1})
        _fill_stream(self.kinesis, self.stream, n_records)
        self.now = datetime.now(UTC) + timedelta(seconds=1)

    def source(self, reader: str) -> Any:
        from replay.sources import open_source

        factory = partial(kinesis_client, self.endpoint_url) if reader == "process" else None
        return open_source("stream", clients=lambda _service: self.kinesis, stream_name=self.stream, now=self.now,
                           kinesis_factory=factory)

    def seconds(self, side: str) -> float:
        kind, reader = side.split("_")
        run: Callable[[Any], int] = _bare if kind == "bare" else _replay
        started = time.perf_counter()
        count = run(self.source(reader))
        seconds = time.perf_counter() - started
        if count != self.n_records:
            raise RuntimeError(f"{side} saw {count} of {self.n_records} records")
        return seconds

    def close(self) -> None:
        self.kinesis.delete_stream(StreamName=self.stream, EnforceConsumerDeletion=True)


def _bare(source: Any) -> int:
    return sum(1 for _ in source.records())


def _replay(source: Any) -> int:
    from consumers.core.projection import ProjectionConfig
    from replay.rebuild import rebuild
    from replay.targets import write_file

    rebuilt = rebuild(source.records(), ProjectionConfig())
    with tempfile.TemporaryDirectory() as tmp:
        write_file(rebuilt.state, str(Path(tmp) / "state.json"))
    return rebuilt.stats.records


def bench_replay_stream(endpoint_url: str, n_records: int, rounds: int) -> dict[str, Figure]:
    """``replay.ratio_vs_fastest_read`` and ``replay.ratio_vs_bare_read`` over ``rounds`` rotated rounds."""
    sides = StreamSides(endpoint_url, n_records)
    try:
        sides.seconds("bare_thread")  # warm the server's shards, the connection pool and the validators
        rates: dict[str, list[float]] = {side: [] for side in SIDES}
        for round_ in range(rounds):
            progress(f"replay: round {round_ + 1}/{rounds}: bare reads and replays of {n_records} records "
                     f"({SHARDS} shards)")
            for side in SIDES[round_ % len(SIDES):] + SIDES[:round_ % len(SIDES)]:
                rates[side].append(n_records / sides.seconds(side))
    finally:
        sides.close()
    fastest = [max(t, p) for t, p in zip(rates["bare_thread"], rates["bare_process"], strict=True)]
    inputs: dict[str, Any] = {
        "records": n_records, "shards": SHARDS, "rounds": rounds, "source": "benchmarks.replay_bench.History",
        "timer": "wall seconds", "function": "benchmarks.replay_stream.bench_replay_stream",
        "rates_events_per_s": {side: {"median": rounded(statistics.median(r)), "runs": [rounded(x) for x in r]}
                               for side, r in rates.items()},
        "thread_replay_over_fastest_read": rounded(statistics.median(pair_ratios(rates["replay_thread"], fastest))),
        "fastest_bare_read_was": {reader: sum(1 for t, p in zip(rates["bare_thread"], rates["bare_process"],
                                                                 strict=True) if (t >= p) == (reader == "thread"))
                                  for reader in ("thread", "process")},
    }
    fast_base = baseline("the faster of the two bare reads (threads in this process, or the child-process "
                         "reader) of the same stream, same round", fastest, "events/s", "fastest bare read")
    own_base = baseline("a bare read through replay's default reader (a child process), same round",
                        rates["bare_process"], "events/s", "bare read, same reader")
    return {
        "replay.ratio_vs_fastest_read": figure(
            pair_ratios(rates["replay_process"], fastest), unit="ratio", inputs=inputs, target=TARGET_RATIO,
            baseline=fast_base, note="events/s of replay (default reader, state written to a file) over the "
            "fastest bare read, round by round"),
        "replay.ratio_vs_bare_read": figure(
            pair_ratios(rates["replay_process"], rates["bare_process"]), unit="ratio", inputs=inputs,
            target=TARGET_RATIO, baseline=own_base, note="events/s of replay over a bare read through the same "
            "(slower) reader, round by round; flatters replay, see replay.ratio_vs_fastest_read"),
    }
