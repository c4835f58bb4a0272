"""Verdict + findings -> the ``HealthCheckReported`` v2 event in our envelope. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from events_schema.envelope import Envelope, Subject, make_envelope
from events_schema.events import GpuResult, HealthCheckReported, XidCount
from healthcheck.findings import DiagReport, Findings, NvmlReport, XidReport
from healthcheck.identity import Identity
from healthcheck.verdict import Verdict

SOURCE = "gpu-recovery/healthcheck"


def build_event(
    findings: Findings,
    verdict: Verdict,
    identity: Identity,
    *,
    durations_s: Mapping[str, float],
    now: datetime,
    event_id: str,
) -> Envelope:
    data = HealthCheckReported(
        node_arn=identity.node_arn,
        ec2_instance_id=identity.instance_id,
        check_task_arn=identity.check_task_arn,
        incident_id=identity.incident_id,
        level=findings.level,
        verdict=verdict.verdict,
        recommended_action=verdict.action,
        reason=verdict.reason,
        gpus=[GpuResult(index=g.index, uuid=g.uuid, status=g.status, errors=list(g.errors))
              for g in verdict.gpus],
        xids=_xids(findings),
        dcgm_version=findings.diag.dcgm_version if isinstance(findings.diag, DiagReport) else None,
        expected_gpus=findings.expected_gpus,
        found_gpus=_found_gpus(findings),
        durations_s={k: round(v, 3) for k, v in durations_s.items()},
        # Extra fields (the payload model keeps unknown fields): what a person reading the event wants next.
        driver_version=_driver(findings),
        hardware_findings=[{"action": f.action, "reason": f.reason, "gpu": f.gpu} for f in verdict.hardware],
        inconclusive_findings=list(verdict.inconclusive),
        exit_code=verdict.exit_code,
    )
    subject = Subject(node=identity.node_arn, task=identity.check_task_arn, incident=identity.incident_id)
    return make_envelope(data, event_id=event_id, time=now, source=SOURCE, subject=subject)


def _xids(findings: Findings) -> list[XidCount]:
    if not isinstance(findings.xids, XidReport):
        return []
    return [XidCount(xid=x, count=n) for x, n in sorted(findings.xids.counts.items())]


def _found_gpus(findings: Findings) -> int | None:
    if isinstance(findings.nvml, NvmlReport):
        return findings.nvml.device_count
    if isinstance(findings.diag, DiagReport):
        return len(findings.diag.gpu_ids)
    return None


def _driver(findings: Findings) -> str | None:
    if isinstance(findings.nvml, NvmlReport) and findings.nvml.driver_version:
        return findings.nvml.driver_version
    return findings.diag.driver_version if isinstance(findings.diag, DiagReport) else None
