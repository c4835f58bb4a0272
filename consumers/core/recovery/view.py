"""The records a decision reads and changes: a working copy of what the store loaded.

A decision may need a record nobody loaded (the node of a failed rank, every node for a placement).
It then raises ``NeedMore`` with the keys; the consumer loads them and decides the whole batch again
from the stored records (decisions are deterministic), so the core never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from consumers.core.recovery.model import Fleet, Incident, Job, Node, TaskRecord

RecordType = Literal["job", "node", "incident", "task", "fleet", "instance", "nodes"]
Key = tuple[str, str]  # (record type, key): see RecordType
FLEET_KEY: Key = ("fleet", "fleet")
ALL_NODES: Key = ("nodes", "*")
Change = Literal["facts", "plan"]


class NeedMore(Exception):
    def __init__(self, keys: Iterable[Key]) -> None:
        self.keys = frozenset(keys)
        super().__init__(f"need {sorted(self.keys)}")


_MODELS: dict[str, type[Job] | type[Node] | type[Incident] | type[TaskRecord] | type[Fleet]] = {
    "job": Job, "node": Node, "incident": Incident, "task": TaskRecord, "fleet": Fleet,
}


class View:
    """Records by key. ``loaded`` maps every loaded key to its stored body, or None when it does not exist."""

    def __init__(self, loaded: Mapping[Key, dict[str, Any] | None] | None = None, *, complete: bool = False) -> None:
        # complete: every record there is was loaded (replay, tests), so a key not loaded does not exist.
        self.complete = complete
        self._loaded = dict(loaded or {})
        self._records: dict[Key, Any] = {}
        self.changed: dict[Key, set[Change]] = {}
        self.retired: dict[Key, dict[str, Any]] = {}

    # --- reading ---------------------------------------------------------------------------------

    def has(self, key: Key) -> bool:
        return key in self._loaded or key in self._records

    def _get(self, key: Key) -> Any:
        if key in self._records:
            return self._records[key]
        if key not in self._loaded:
            if self.complete:
                return None
            raise NeedMore([key])
        body = self._loaded[key]
        record = None if body is None or body.get("tombstone") else _MODELS[key[0]].model_validate(body)
        self._records[key] = record
        return record

    def tombstone(self, key: Key) -> dict[str, Any] | None:
        """The tombstone a record left when it expired, if any."""
        if key in self.retired:
            return self.retired[key]
        body = self._loaded.get(key)
        return body if body and body.get("tombstone") and self._records.get(key) is None else None

    def job(self, job_id: str) -> Job | None:
        record: Job | None = self._get(("job", job_id))
        return record

    def node(self, arn: str) -> Node | None:
        record: Node | None = self._get(("node", arn))
        return record

    def incident(self, incident_id: str) -> Incident | None:
        record: Incident | None = self._get(("incident", incident_id))
        return record

    def task(self, arn: str) -> TaskRecord | None:
        record: TaskRecord | None = self._get(("task", arn))
        return record

    def fleet(self) -> Fleet:
        record: Fleet | None = self._get(FLEET_KEY)
        if record is None:
            record = Fleet()
            self._records[FLEET_KEY] = record
        return record

    def node_for_instance(self, instance_id: str) -> Node | None:
        """The node running an EC2 (or managed) instance, through the store's instance index."""
        key: Key = ("instance", instance_id)
        if self.complete:
            return next((n for n in self.all_nodes() if n.facts.instance_id == instance_id), None)
        if key not in self._loaded:
            raise NeedMore([key])
        body = self._loaded[key]
        return self.node(str(body["node_arn"])) if body else None

    def all_nodes(self) -> list[Node]:
        """Every node of the cluster (a placement reads them all)."""
        if ALL_NODES not in self._loaded and not self.complete:
            raise NeedMore([ALL_NODES])
        arns = sorted({k[1] for k in self._loaded if k[0] == "node"} | {k[1] for k in self._records if k[0] == "node"})
        return [n for n in (self.node(arn) for arn in arns) if n is not None]

    def need(self, keys: Iterable[Key]) -> None:
        """Ask for several records at once (one round trip instead of one per record)."""
        missing = [k for k in keys if not self.has(k)]
        if missing:
            raise NeedMore(missing)

    # --- writing ---------------------------------------------------------------------------------

    def add(self, key: Key, record: Any) -> None:
        self._records[key] = record
        self.retired.pop(key, None)
        self.touch(key, "facts")
        self.touch(key, "plan")

    def touch(self, key: Key, part: Change) -> None:
        self.changed.setdefault(key, set()).add(part)

    def retire(self, key: Key, tombstone: dict[str, Any]) -> None:
        """The record leaves the live state; a small tombstone stays so a late duplicate is harmless."""
        self._records[key] = None
        self.retired[key] = {**tombstone, "tombstone": True}
        self.changed.pop(key, None)

    def record(self, key: Key) -> Any:
        return self._records.get(key)

    def loaded_body(self, key: Key) -> dict[str, Any] | None:
        return self._loaded.get(key)

    def settled(self) -> None:
        """What this view decided is now what is stored (tests and replay keep one view across decisions)."""
        for key, tombstone in self.retired.items():
            self._loaded[key] = tombstone
            self._records.pop(key, None)
        self.retired.clear()
        self.changed.clear()

    def records(self) -> dict[Key, Any]:
        """Every record this view holds (parsed), retired ones left out."""
        for key in list(self._loaded):
            if key[0] in _MODELS and key not in self._records:
                self._get(key)
        return {k: r for k, r in self._records.items() if r is not None}

    def dump(self, key: Key) -> dict[str, Any] | None:
        """A record as the store keeps it (JSON), or its tombstone."""
        if key in self.retired:
            return self.retired[key]
        record = self._records.get(key)
        return None if record is None else dict(record.model_dump(mode="json"))
