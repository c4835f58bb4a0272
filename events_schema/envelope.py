"""The versioned envelope every event of ours travels in, the type registry and the upcasters.

Wire form (one JSON object per Kinesis record)::

    {"event_id": "...", "type": "NodeStateChanged", "schema_version": 1,
     "time": "2026-11-28T10:00:00Z", "source": "gpu-recovery/recovery",
     "subject": {"node": "arn:...", "job": "...", "task": null, "incident": "..."},
     "causation_id": "...", "data": {...}}

Readers upcast ``data`` from any older ``schema_version`` to the current one before validating it,
so a record written years ago still reads as today's model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventData(BaseModel):
    """Base of every event payload of ours. Subclasses set TYPE and VERSION."""

    model_config = ConfigDict(extra="allow", frozen=True)
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class Subject(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    node: str | None = None
    job: str | None = None
    task: str | None = None
    incident: str | None = None


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    event_id: str
    type: str
    schema_version: int = Field(ge=1)
    time: datetime
    source: str
    subject: Subject = Field(default_factory=Subject)
    causation_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OurEvent:
    """A decoded event of ours: the envelope, and its payload upcast and validated."""

    envelope: Envelope
    data: EventData

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    @property
    def time(self) -> datetime:
        return self.envelope.time

    @property
    def subject(self) -> Subject:
        return self.envelope.subject


@dataclass(frozen=True)
class EventType:
    model: type[EventData]
    # upcasters[k] turns a version-k payload into a version-(k+1) payload.
    upcasters: Mapping[int, Upcaster] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.TYPE

    @property
    def version(self) -> int:
        return self.model.VERSION

    def upcast(self, version: int, data: dict[str, Any]) -> dict[str, Any]:
        if version > self.version:
            raise UnknownEventVersion(self.name, version, self.version)
        while version < self.version:
            step = self.upcasters.get(version)
            if step is None:
                raise UnknownEventVersion(self.name, version, self.version)
            data = step(data)
            version += 1
        return data


class EventSchemaError(ValueError):
    """A record that is not one of our events as this version of the code knows them."""


class UnknownEventType(EventSchemaError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown event type {name!r}")
        self.name = name


class UnknownEventVersion(EventSchemaError):
    def __init__(self, name: str, version: int, current: int) -> None:
        super().__init__(f"{name} schema_version {version} cannot be read (current is {current})")


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}

    def register(self, model: type[EventData], upcasters: Mapping[int, Upcaster] | None = None) -> None:
        if model.TYPE in self._types:
            raise ValueError(f"event type {model.TYPE} registered twice")
        self._types[model.TYPE] = EventType(model, dict(upcasters or {}))

    def get(self, name: str) -> EventType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventType(name) from None

    def __iter__(self) -> Any:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def decode(self, raw: Mapping[str, Any]) -> OurEvent:
        try:
            envelope = Envelope.model_validate(raw)
        except ValidationError as exc:
            raise EventSchemaError(f"invalid envelope: {_first_error(exc)}") from exc
        return self._payload(envelope)

    def decode_json(self, data: bytes | str) -> OurEvent:
        """``decode`` straight from the record's bytes: one pass through pydantic's JSON parser."""
        try:
            envelope = Envelope.model_validate_json(data)
        except ValidationError as exc:
            raise EventSchemaError(f"invalid envelope: {_first_error(exc)}") from exc
        return self._payload(envelope)

    def _payload(self, envelope: Envelope) -> OurEvent:
        event_type = self.get(envelope.type)
        data = event_type.upcast(envelope.schema_version, dict(envelope.data))
        try:
            payload = event_type.model.model_validate(data)
        except ValidationError as exc:
            raise EventSchemaError(f"invalid {envelope.type} data: {_first_error(exc)}") from exc
        if envelope.schema_version != event_type.version:
            envelope = envelope.model_copy(update={"schema_version": event_type.version, "data": data})
        return OurEvent(envelope, payload)


def make_envelope(
    data: EventData,
    *,
    event_id: str,
    time: datetime,
    source: str,
    subject: Subject,
    causation_id: str | None = None,
) -> Envelope:
    return Envelope(
        event_id=event_id,
        type=data.TYPE,
        schema_version=data.VERSION,
        time=time,
        source=source,
        subject=subject,
        causation_id=causation_id,
        data=data.model_dump(mode="json"),
    )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(root)"
    return f"{where}: {error['msg']}"
