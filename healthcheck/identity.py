"""Who is reporting: node ARN, EC2 instance id, the check task's ARN. Explicit values win; otherwise ask
the ECS task metadata endpoint, the ECS agent's introspection API (reachable with host networking, as the
DCGM task runs) and IMDSv2, each with a short timeout. Lookups happen only inside an ECS task.

Also what the report must prove: the check attempt it answers (``check_key``), the secret recovery gave
that attempt (never printed, never logged: it signs the report), and the host's boot time.
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
AGENT_INTROSPECTION_URL = "http://127.0.0.1:51678/v1/metadata"
IMDS = "http://169.254.169.254/latest"

Fetch = Callable[[str, str, Mapping[str, str], float], str | None]


@dataclass(frozen=True, slots=True)
class Identity:
    node_arn: str
    instance_id: str | None
    check_task_arn: str | None
    incident_id: str | None
    check_key: str | None = None
    # Kept out of repr so that no log line or traceback can show it.
    secret: str | None = field(default=None, repr=False)
    boot_time: datetime | None = None


def resolve(
    *,
    node_arn: str | None,
    instance_id: str | None,
    check_task_arn: str | None,
    incident_id: str | None,
    environ: Mapping[str, str],
    fetch: Fetch | None = None,
    timeout_s: float = 2.0,
    check_key: str | None = None,
    secret: str | None = None,
    boot_time: datetime | None = None,
) -> Identity:
    get = fetch or http_fetch
    metadata_uri = environ.get(METADATA_ENV)
    in_ecs = bool(metadata_uri)
    if check_task_arn is None and metadata_uri:
        check_task_arn = _json_field(get("GET", f"{metadata_uri}/task", {}, timeout_s), "TaskARN")
    if node_arn is None and in_ecs:
        node_arn = _json_field(get("GET", AGENT_INTROSPECTION_URL, {}, timeout_s), "ContainerInstanceArn")
    if instance_id is None and in_ecs:
        instance_id = _imds_instance_id(get, timeout_s)
    if node_arn is None:
        node_arn = f"unknown-node:{socket.gethostname()}"
        log.warning("node ARN unknown (set GPU_RECOVERY_NODE_ARN); reporting as %s", node_arn)
    return Identity(node_arn, instance_id, check_task_arn, incident_id, check_key, secret, boot_time)


def _imds_instance_id(get: Fetch, timeout_s: float) -> str | None:
    token = get("PUT", f"{IMDS}/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"}, timeout_s)
    if not token:
        return None  # ECS Anywhere, or IMDS switched off
    value = get("GET", f"{IMDS}/meta-data/instance-id", {"X-aws-ec2-metadata-token": token}, timeout_s)
    return value.strip() if value else None


def _json_field(body: str | None, name: str) -> str | None:
    if not body:
        return None
    try:
        value: Any = json.loads(body)
    except json.JSONDecodeError:
        return None
    found = value.get(name) if isinstance(value, dict) else None
    return str(found) if found else None


def http_fetch(method: str, url: str, headers: Mapping[str, str], timeout_s: float) -> str | None:
    request = urllib.request.Request(url, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.info("lookup %s %s failed: %s", method, url, exc)
        return None
