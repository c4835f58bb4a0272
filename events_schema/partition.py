"""Partition keys: a node's events share a shard, so they stay in order (DESIGN section 6)."""

from __future__ import annotations

from events_schema.envelope import Envelope


def partition_key_for(envelope: Envelope) -> str:
    """Node first (health reports, incident steps), then job, then task; the event id as a last resort."""
    subject = envelope.subject
    return subject.node or subject.job or subject.task or envelope.event_id
