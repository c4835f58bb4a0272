"""Verdict + findings -> the ``HealthCheckReported`` v3 event in our envelope. Pure.

When the identity carries the check's secret, ``proof`` is the HMAC of exactly the payload that goes on the
wire (``events_schema.proof.report_proof`` over the envelope's ``data`` without ``proof``), so recovery can
verify it on the record it reads. No secret (a check run by hand): no proof, and recovery treats the report
as a signal only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from events_schema.envelope import Envelope, Subject, make_envelope
from events_schema.events import GpuResult, HealthCheckReported, XidCount
from events_schema.proof import report_proof
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
        check_key=identity.check_key,
        boot_time=identity.boot_time,
        fix=verdict.fix,
        untested=list(verdict.untested),
        # Extra fields (the payload model keeps unknown fields): what a person reading the event wants next.
        **_extras(findings, verdict),
    )
    if identity.secret:
        data = data.model_copy(update={"proof": report_proof(identity.secret, data.model_dump(mode="json"))})
    subject = Subject(node=identity.node_arn, task=identity.check_task_arn, incident=identity.incident_id)
    return make_envelope(data, event_id=event_id, time=now, source=SOURCE, subject=subject)


def _extras(findings: Findings, verdict: Verdict) -> dict[str, Any]:
    return {
        "driver_version": _driver(findings),
        "dcgm_format": findings.diag.format if isinstance(findings.diag, DiagReport) else None,
        "hardware_findings": [{"action": f.action, "reason": f.reason, "gpu": f.gpu} for f in verdict.hardware],
        "configuration_findings": [{"reason": f.reason, "fix": f.fix, "gpu": f.gpu} for f in verdict.configuration],
        "inconclusive_findings": list(verdict.inconclusive),
        "kernel_events": _kernel_events(findings),
        "exit_code": verdict.exit_code,
    }


def _xids(findings: Findings) -> list[XidCount]:
    if not isinstance(findings.xids, XidReport):
        return []
    return [XidCount(xid=x, count=n) for x, n in sorted(findings.xids.counts.items())]


def _kernel_events(findings: Findings) -> list[str]:
    """Driver messages without an XID (SXids, a GPU off the bus, a failed init), as logged; at most 20."""
    if not isinstance(findings.xids, XidReport):
        return []
    return list(dict.fromkeys(e.text for e in findings.xids.events if e.kind != "xid"))[:20]


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
