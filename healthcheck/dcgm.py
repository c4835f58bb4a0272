"""``dcgmi diag`` and ``dcgmi health``: run them with deadlines and read their JSON (DCGM 4.x, pinned).

The JSON shapes follow DCGM 4's dcgmi sources (``Diag::HelperJsonBuildOutput``, ``NvvsJsonStrings.h``,
``Health::GenerateOutputFromResponse`` rendered by ``DcgmiOutputJson``):

    diag:   {"DCGM Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [{"name": "memory",
              "results": [{"entity_group": "GPU", "entity_group_id": 1, "entity_id": 0, "status": "Fail",
              "warnings": [{"warning": "...", "error_id": 52, "error_category": 10, "error_severity": 2}]}],
              "test_summary": {"status": "Fail"}}]}]},
             "entity_groups": [{"entity_group": "GPU", "entity_group_id": 1, "entities": [...]}],
             "metadata": {"version": "4.4.2", "Driver Version Detected": "570.172.08"}}
            or, when it could not run: {"DCGM Diagnostic": {"version": "...", "runtime_error": "..."}}
    health: {"header": ["Health Monitor Report"], "body": {"Overall Health": {"value": "Healthy"},
             "GPU": {"children": {"3": {"value": "Failure", "children": {"Errors": {"children":
             {"Memory system": {"value": "Failure", "overflow": ["message in", "54-character pieces"]}}}}}}}}}

DCGM 3.x wrote ``"DCGM GPU Diagnostic"`` with per-GPU ``gpu_ids``; that is read as inconclusive, never guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healthcheck.findings import (
    DiagError,
    DiagOutcome,
    DiagReport,
    DiagResult,
    HealthIncident,
    HealthOutcome,
    HealthReport,
    Inconclusive,
    ResultStatus,
)
from healthcheck.process import CommandResult, Runner

PINNED_DCGM_MAJOR = 4
GPU_ENTITY_GROUP_ID = 1  # DCGM_FE_GPU

# Wall-clock limits per diag level; a level-3/4 run is long by design. The recovery deadline is 20 min.
DEFAULT_DIAG_TIMEOUT_S = {1: 300.0, 2: 900.0, 3: 3600.0, 4: 7200.0}

_STATUS: dict[str, ResultStatus | None] = {
    "pass": "pass", "fail": "fail", "warn": "warn", "skip": "skip", "": None, "not run": None,
}


# ---- the diag JSON, as DCGM 4 writes it ------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Warning(_Model):
    warning: str = ""
    error_id: int | None = None
    error_category: int | None = None
    error_severity: int | None = None


class _Result(_Model):
    entity_group: str | None = None
    entity_group_id: int | None = None
    entity_id: int | None = None
    status: str = ""
    warnings: list[_Warning] = Field(default_factory=list)


class _Test(_Model):
    name: str
    results: list[_Result] = Field(default_factory=list)
    test_summary: _Result | None = None


class _Category(_Model):
    category: str
    tests: list[_Test] = Field(default_factory=list)


class _Diagnostic(_Model):
    test_categories: list[_Category] = Field(default_factory=list)
    runtime_error: str | None = None
    version: str | None = None


class _Entity(_Model):
    entity_id: int
    serial_num: str | None = None


class _EntityGroup(_Model):
    entity_group: str = ""
    entity_group_id: int | None = None
    entities: list[_Entity] = Field(default_factory=list)


class _Metadata(_Model):
    version: str | None = None
    driver_version: str | None = Field(None, alias="Driver Version Detected")


class _DiagOutput(_Model):
    diagnostic: _Diagnostic = Field(alias="DCGM Diagnostic")
    entity_groups: list[_EntityGroup] = Field(default_factory=list)
    metadata: _Metadata = Field(default_factory=_Metadata)


# ---- running ----------------------------------------------------------------------------------------------
def run_diag(dcgmi: str, level: int, *, timeout_s: float, runner: Runner) -> tuple[DiagOutcome, float]:
    result = runner([dcgmi, "diag", "-r", str(level), "-j"], timeout_s)
    return interpret_diag(result), result.duration_s


def run_health(
    dcgmi: str, *, sample_s: float, timeout_s: float, runner: Runner, sleep: Callable[[float], None]
) -> tuple[HealthOutcome, float]:
    """Set every health watch, let them sample, then ask for the report."""
    watches = runner([dcgmi, "health", "-s", "a"], timeout_s)
    if not watches.ran or watches.returncode != 0:
        return Inconclusive("dcgm_health", f"setting health watches failed: {watches.describe()}"), \
            watches.duration_s
    sleep(sample_s)
    check = runner([dcgmi, "health", "-c", "-j"], timeout_s)
    return interpret_health(check), watches.duration_s + sample_s + check.duration_s


# ---- reading (pure) ---------------------------------------------------------------------------------------
def interpret_diag(result: CommandResult) -> DiagOutcome:
    if not result.ran:
        return Inconclusive("dcgm_diag", result.describe())
    raw = _json_object(result.stdout)
    if raw is None:
        return Inconclusive("dcgm_diag", f"no JSON from dcgmi diag ({result.describe()})")
    outcome = parse_diag(raw)
    if isinstance(outcome, DiagReport) and result.returncode != 0 and not _any_failed(outcome):
        # dcgmi exits non-zero when a test fails; non-zero with nothing failed means we cannot trust it.
        return Inconclusive("dcgm_diag", f"dcgmi diag exited {result.returncode} but reported no failure")
    return outcome


def parse_diag(raw: dict[str, Any]) -> DiagOutcome:
    if "DCGM GPU Diagnostic" in raw and "DCGM Diagnostic" not in raw:
        return Inconclusive("dcgm_diag", f"DCGM 3.x output; this agent reads DCGM {PINNED_DCGM_MAJOR}.x JSON")
    try:
        doc = _DiagOutput.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        return Inconclusive("dcgm_diag", f"unexpected dcgmi diag JSON at {where}: {error['msg']}")
    version = doc.metadata.version or doc.diagnostic.version
    if version is not None and _major(version) != PINNED_DCGM_MAJOR:
        return Inconclusive("dcgm_diag", f"DCGM {version} is not the pinned major {PINNED_DCGM_MAJOR}")
    if doc.diagnostic.runtime_error:
        return Inconclusive("dcgm_diag", f"dcgmi diag runtime error: {doc.diagnostic.runtime_error.strip()}")
    try:
        results = tuple(_results(doc.diagnostic.test_categories))
    except ValueError as exc:
        return Inconclusive("dcgm_diag", str(exc))
    if not results:
        return Inconclusive("dcgm_diag", "dcgmi diag ran no test")
    gpu_group = [g for g in doc.entity_groups if _is_gpu(g.entity_group, g.entity_group_id)]
    entities = [e for g in gpu_group for e in g.entities]
    gpu_ids = tuple(sorted({e.entity_id for e in entities} or {r.gpu for r in results if r.gpu is not None}))
    serials = {e.entity_id: e.serial_num for e in entities if e.serial_num}
    return DiagReport(version, doc.metadata.driver_version, gpu_ids, results, serials)


def interpret_health(result: CommandResult) -> HealthOutcome:
    if not result.ran:
        return Inconclusive("dcgm_health", result.describe())
    raw = _json_object(result.stdout)
    if raw is None or result.returncode != 0:
        return Inconclusive("dcgm_health", f"no health report from dcgmi ({result.describe()})")
    return parse_health(raw)


def parse_health(raw: dict[str, Any]) -> HealthOutcome:
    body = raw.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("Overall Health"), dict):
        return Inconclusive("dcgm_health", "health JSON has no 'Overall Health'")
    overall = _health_word(body["Overall Health"].get("value"))
    if overall is None:
        return Inconclusive("dcgm_health", f"health is {body['Overall Health'].get('value')!r}")
    incidents: list[HealthIncident] = []
    for group_name, group in body.items():
        if group_name == "Overall Health" or not isinstance(group, dict):
            continue
        for entity_id, entity in (group.get("children") or {}).items():
            incidents.extend(_entity_incidents(group_name, entity_id, entity))
    return HealthReport(overall, tuple(incidents))


def _entity_incidents(group_name: str, entity_id: str, entity: Any) -> list[HealthIncident]:
    gpu = int(entity_id) if group_name == "GPU" and entity_id.isdigit() else None
    systems = (((entity or {}).get("children") or {}).get("Errors") or {}).get("children") or {}
    found = []
    for system, detail in systems.items():
        word = _health_word((detail or {}).get("value"))
        if word in ("warn", "fail"):
            message = " ".join(str(p) for p in (detail.get("overflow") or []))
            where = system if gpu is not None else f"{group_name} {entity_id} {system}"
            found.append(HealthIncident(gpu, where, word, message))
    return found


def _results(categories: list[_Category]) -> list[DiagResult]:
    out: list[DiagResult] = []
    for category in categories:
        for test in category.tests:
            per_gpu = [_result(test.name, category.category, r) for r in test.results
                       if _is_gpu(r.entity_group, r.entity_group_id)]
            ran = [r for r in per_gpu if r is not None]
            out.extend(ran)
            summary = _result(test.name, category.category, test.test_summary) if test.test_summary else None
            # A test-wide failure that no GPU result carries (an error not tied to a GPU) still counts.
            if summary is not None and summary.status == "fail" and not any(r.status == "fail" for r in ran):
                out.append(summary)
    return out


def _result(test: str, category: str, raw: _Result) -> DiagResult | None:
    key = raw.status.strip().lower()
    if key not in _STATUS:
        raise ValueError(f"unrecognised status {raw.status!r} in dcgmi test {test!r}")
    status = _STATUS[key]
    if status is None:
        return None  # not run
    gpu = raw.entity_id if _is_gpu(raw.entity_group, raw.entity_group_id) else None
    errors = tuple(DiagError(w.error_id, w.error_severity, w.error_category, w.warning.strip())
                   for w in raw.warnings)
    return DiagResult(test, category, gpu, status, errors)


def _any_failed(report: DiagReport) -> bool:
    return any(r.status == "fail" for r in report.results)


def _is_gpu(group: str | None, group_id: int | None) -> bool:
    return group == "GPU" or group_id == GPU_ENTITY_GROUP_ID


_HEALTH_WORDS: dict[str, Literal["pass", "warn", "fail"]] = {
    "Healthy": "pass", "Warning": "warn", "Failure": "fail",
}


def _health_word(value: Any) -> Literal["pass", "warn", "fail"] | None:
    return _HEALTH_WORDS.get(str(value))


def _major(version: str) -> int | None:
    match = re.match(r"\s*(\d+)", version)
    return int(match.group(1)) if match else None


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in dcgmi's stdout; tolerate log lines before or after it (as DCGM's own tests do)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
