"""A notice as an SNS Publish request: JSON for machines, text for email, attributes for filter policies."""

from __future__ import annotations

import json
from typing import Any

from events_schema.notices import Notice


def publish_request(notice: Notice, *, idempotency_key: str) -> dict[str, Any]:
    body = notice.model_dump(mode="json")
    attributes = {"kind": notice.kind, "severity": notice.severity, "cluster": notice.cluster,
                  "idempotency_key": idempotency_key[:256]}
    return {
        "Subject": (notice.title or notice.summary)[:100],
        "Message": json.dumps({"default": json.dumps(body, sort_keys=True), "email": _email(notice)}),
        "MessageStructure": "json",
        "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v},
    }


def _email(notice: Notice) -> str:
    lines = [notice.summary, "", f"cluster:   {notice.cluster}",
             f"jobs:      {', '.join(notice.job_ids) or '-'}",
             f"nodes:     {', '.join(notice.node_arns) or '-'}",
             f"incident:  {notice.incident_id or '-'}", "", f"next: {notice.next_step}"]
    return "\n".join(lines)
