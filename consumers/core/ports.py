"""The small interfaces the core needs from the outside world; adapters implement them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from consumers.core.errors import TransientError
from consumers.core.projection import EntityKey, Item
from events_schema.envelope import Envelope


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record as any runtime (KCL daemon, local reader, replay) hands it over."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: datetime | None = None


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What the runtime knows about a batch besides its records (the recovery's clock reads it)."""

    shard_id: str
    millis_behind_latest: int = 0


@dataclass(frozen=True, slots=True)
class StoredItem:
    item: Item
    rev: int  # optimistic-concurrency revision; 0 means the item does not exist yet


@dataclass(frozen=True, slots=True)
class ItemWrite:
    key: EntityKey
    item: Item
    expected_rev: int


class ProjectionStore(Protocol):
    def load(self, keys: Collection[EntityKey]) -> dict[EntityKey, StoredItem]: ...

    def save(self, writes: Sequence[ItemWrite]) -> list[EntityKey]:
        """Write each item if its revision is still the expected one; return the keys that were not."""
        ...


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    consumer: str
    shard_id: str
    sequence_number: str
    partition_key: str
    reason_kind: str
    reason: str
    data: bytes
    parked_at: str
    error_type: str = ""  # the exception's class when the record failed other than by decoding
    position: str = ""  # where in its batch (or file) the record was


class ParkingLot(Protocol):
    def park(self, records: Sequence[ParkedRecord]) -> None: ...


class StreamWriter(Protocol):
    def append(self, envelopes: Sequence[Envelope], partition_keys: Sequence[str] | None = None) -> list[str]:
        """Append in order; return the sequence numbers. Raises TransientError when it may be retried."""
        ...


# --- the recovery consumer ------------------------------------------------------------------------

RecordKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Loaded:
    """Records as stored: their JSON bodies (None: absent) and revisions (0: absent)."""

    bodies: dict[RecordKey, dict[str, Any] | None]
    revs: dict[RecordKey, int]

    def merge(self, other: Loaded) -> Loaded:
        return Loaded({**self.bodies, **other.bodies}, {**self.revs, **other.revs})


@dataclass(frozen=True, slots=True)
class RecordWrite:
    """One record written if its revision is still ``expected_rev`` (0: it must not exist yet)."""

    key: RecordKey
    body: dict[str, Any]
    expected_rev: int
    timer: dict[str, Any] | None = None
    old_timer: dict[str, Any] | None = None
    instance_id: str | None = None
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Output:
    """Something a decision produced that must happen after the commit: an event to append (``event``:
    the envelope's JSON and its partition key) or a command to run (``order``). ``owner`` is the record
    whose change it belongs to, so it commits in the same transaction."""

    kind: Literal["event", "order"]
    payload: dict[str, Any]
    owner: RecordKey | None = None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    owner: str
    seq: str
    outputs: tuple[Output, ...]


class StateConflict(TransientError):
    """Another processor changed a record since this one loaded it: reload and decide again."""

    def __init__(self, keys: Collection[RecordKey]) -> None:
        super().__init__(f"records changed concurrently: {sorted(keys)[:5]}")
        self.keys = frozenset(keys)


class RecoveryStore(Protocol):
    def load(self, keys: Collection[RecordKey]) -> Loaded: ...

    def load_nodes(self) -> Loaded: ...

    def commit(self, writes: Sequence[RecordWrite], outputs: Sequence[Output], owner: str) -> list[OutboxEntry]:
        """Write each record conditionally, with the outputs it owns in the same transaction; raises
        StateConflict naming the records another processor changed."""
        ...

    def due(self, now: str, limit: int) -> list[tuple[RecordKey, dict[str, Any]]]:
        """Armed timers due at ``now``: (record, timer)."""
        ...

    def pending(self, owner: str) -> list[OutboxEntry]: ...

    def done(self, entry: OutboxEntry) -> None: ...

    def publish_position(self, shard: str, at: str) -> None: ...

    def drop_position(self, shard: str) -> None: ...

    def positioned_shards(self) -> list[str]:
        """The shards with a published position (read by this consumer or by a processor before it)."""
        ...

    def clock(self) -> str | None:
        """The slowest shard's position: deadlines fire against it (the stream's clock)."""
        ...

    def check_key(self) -> bytes: ...


ClaimState = Literal["new", "claimed", "done"]


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    status: str | None = None
    detail: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None


class Ledger(Protocol):
    def claim(self, key: str, action_type: str, at: str) -> Claim: ...

    def done(self, key: str, status: str, detail: dict[str, Any], error: str | None,
             error_kind: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class ActionResult:
    status: Literal["succeeded", "failed", "unknown"]
    detail: dict[str, Any]
    error: str | None = None
    error_kind: Literal["refused", "throttled", "unavailable", "timeout", "unknown"] | None = None


class Actuator(Protocol):
    def execute(self, command: Any, key: str) -> ActionResult:
        """Make the AWS call; never raises: every error is a result (``failed`` only when AWS refused)."""
        ...

    def find_done(self, command: Any, key: str) -> dict[str, Any] | None:
        """Evidence that a call whose result is unknown took effect (e.g. the task it started)."""
        ...
