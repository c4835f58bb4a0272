"""What a decision works with and produces: the records (a ``View``), the settings, the decision's time,
and the effects (events to record, commands to run). Pure: time is the input's time, never a clock."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from consumers.core.clocktext import iso, parse_iso
from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.model import Timer, TimerKind
from consumers.core.recovery.view import Key, View
from events_schema.commands import CommandModel, Step
from events_schema.envelope import EventData, Subject


def stable_id(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gpu-recovery/{text}"))


def short_hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def short(arn: str | None) -> str:
    """The last part of an ARN, for people: ``arn:...:container-instance/cluster/4f6a0c2e`` -> ``4f6a0c2e``."""
    return (arn or "?").rsplit("/", 1)[-1][:12]


@dataclass(frozen=True)
class Emit:
    data: EventData
    subject: Subject
    event_id: str
    partition_key: str
    cause: str | None = None  # the event id of the input that led here (the envelope's causation_id)


@dataclass(frozen=True)
class Order:
    """A command decided: recorded as ``DecisionRecorded`` first, then run once (its key is its identity)."""

    key: str
    command: CommandModel
    step: Step
    reason: str
    subject: Subject
    incident_id: str | None = None
    job_id: str | None = None
    cause: str | None = None  # the event id of the input that led to it: audits and latency trace it back


@dataclass
class Effects:
    emits: list[Emit] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.emits or self.orders)


@dataclass
class Ctx:
    view: View
    config: PolicyConfig
    now: str
    effects: Effects = field(default_factory=Effects)
    dirty: list[Key] = field(default_factory=list)
    # Which input is being followed: set per input, then per record as settle() reconciles it, so every
    # decision names the event that caused it (the first input that made its record dirty in this batch).
    cause: str | None = None
    causes: dict[Key, str] = field(default_factory=dict)
    _orders: dict[Key, int] = field(default_factory=dict)

    def order_of(self, key: Key, version: int) -> int:
        """A change's place among a record's changes: the version this decision records, then the count."""
        n = self._orders.get(key, 0) + 1
        self._orders[key] = n
        return (version + 1) * 1000 + n

    # --- time ------------------------------------------------------------------------------------

    def at(self, delta: timedelta) -> str:
        return iso(parse_iso(self.now) + delta)

    def timer(self, kind: TimerKind, delta: timedelta, token: str) -> Timer:
        return Timer(kind=kind, due_at=self.at(delta), token=token)

    def older_than(self, moment: str | None, delta: timedelta) -> bool:
        return bool(moment) and parse_iso(self.now) - parse_iso(str(moment)) >= delta

    # --- effects ---------------------------------------------------------------------------------

    def emit(self, data: EventData, subject: Subject, identity: str, partition_key: str | None = None) -> None:
        key = partition_key or subject.node or subject.job or subject.incident or subject.task or identity
        self.effects.emits.append(Emit(data, subject, stable_id(f"{data.TYPE}:{identity}"), key, self.cause))

    def order(self, key: str, command: CommandModel, *, step: Step, reason: str, subject: Subject,
              incident_id: str | None = None, job_id: str | None = None) -> None:
        if any(o.key == key for o in self.effects.orders):
            return  # decided twice in one batch: one command
        self.effects.orders.append(Order(key, command, step, reason, subject, incident_id, job_id, self.cause))

    def reject(self, reason: str) -> None:
        self.effects.rejected.append(reason)

    def mark(self, key: Key) -> None:
        """This record should be looked at again (its inputs changed)."""
        if key not in self.dirty:
            self.dirty.append(key)
        if self.cause is not None:
            self.causes.setdefault(key, self.cause)

    def changed(self, key: Key) -> None:
        """This record's plan changed: recorded, and looked at again."""
        self.view.touch(key, "plan")
        self.mark(key)
