"""The local EventBridge: moto cannot deliver EventBridge events to Kinesis, so this applies the very
rules the CDK stack deploys (events_schema.rules) and puts each matching event into the stream with
that rule's partition key, as the Kinesis target would. An event whose key Kinesis would refuse goes
to ``dead_letters``, as EventBridge sends it to the rules' dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from events_schema.event_pattern import matches
from events_schema.rules import IngestRule


class RawWriter(Protocol):
    def put_raw(self, records: Sequence[tuple[bytes, str]]) -> list[str]: ...


class EventBridgeBridge:
    def __init__(self, rules: Sequence[IngestRule], writer: RawWriter) -> None:
        self._rules = list(rules)
        self._writer = writer
        self.delivered = 0
        self.unmatched = 0  # events no rule took (another cluster's, say): EventBridge drops them too
        self.dead_letters: list[tuple[str, dict[str, Any]]] = []

    def route(self, event: dict[str, Any]) -> list[tuple[bytes, str]]:
        """Every rule that matches delivers the event once, as EventBridge does."""
        data = json.dumps(event, separators=(",", ":")).encode()
        routed = []
        matched = False
        for rule in self._rules:
            if matches(rule.event_pattern, event):
                matched = True
                try:
                    routed.append((data, rule.partition_key(event)))
                except KeyError:
                    self.dead_letters.append((rule.name, event))
        self.unmatched += not matched
        return routed

    def publish(self, events: Sequence[dict[str, Any]]) -> int:
        records: list[tuple[bytes, str]] = []
        for event in events:
            records.extend(self.route(event))
        if records:
            self._writer.put_raw(records)
        self.delivered += len(records)
        return len(records)
