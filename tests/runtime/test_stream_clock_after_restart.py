"""Found by replaying every scenario: after a recovery consumer that
reads every shard restarts, a shard the new one has not read since keeps the dead one's position, and the
stream's clock (the slowest shard's position) stays there: no deadline after it ever fires.

Seen as ``ScenarioRun`` spinning to MAX_STEPS: scenario 12 with one InjectedStop at the third
``after_commit`` never settles (shard 1's clock row stays at +30:07 while the next deadline is +35:22).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from consumers.adapters.memory import InMemoryParkingLot, InMemoryStreamWriter
from consumers.adapters.recovery_store import InMemoryRecoveryStore
from consumers.core.clocktext import iso
from consumers.core.ports import BatchContext, StreamRecord
from consumers.recovery import RecoveryConsumer
from tests.core.recovery_world import config
from tests.factories import at, node_event


class _Untouched:
    """Neither actuator nor ledger is reached by node events alone; a call would fail the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call: {name}")


def _consumer(store: InMemoryRecoveryStore, now: float) -> RecoveryConsumer:
    return RecoveryConsumer(config(), store, InMemoryStreamWriter(), _Untouched(), _Untouched(),
                            InMemoryParkingLot(), clock=lambda: at(now), owner="local")


def _batch(consumer: RecoveryConsumer, shard: str, node: int, when: float) -> None:
    data = json.dumps(node_event(node, version=int(when), when=at(when))).encode()
    consumer.handle_batch([StreamRecord(shard, str(int(when)), "k", data)], BatchContext(shard))


def test_after_a_restart_an_idle_consumer_moves_every_shards_position_to_now() -> None:
    # GIVEN a consumer that read two shards (each position published), then died
    store = InMemoryRecoveryStore()
    first = _consumer(store, now=100)
    _batch(first, "shard-0", 1, when=90)
    _batch(first, "shard-1", 2, when=95)
    # WHEN its successor (same owner, every shard) reads only shard 0, then every shard is drained
    later = 100 + timedelta(minutes=10).total_seconds()
    second = _consumer(store, now=later)
    second.resume()
    _batch(second, "shard-0", 1, when=later - 5)
    second.on_idle()
    # THEN the stream's clock is now: no shard is behind (nothing is left to read on either)
    assert store.clock() == iso(at(later))
