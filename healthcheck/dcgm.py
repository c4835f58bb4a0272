"""``dcgmi diag`` and ``dcgmi health``: run them with deadlines and read their JSON, DCGM 3 or 4.

The family is told from the document itself, never from a version pin (docs/healthcheck.md, "Formats"):

DCGM 4 (dcgmi 4.x ``Diag::HelperJsonBuildOutput``)::

    {"DCGM Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [{"name": "memory",
       "results": [{"entity_group": "GPU", "entity_group_id": 1, "entity_id": 0, "status": "Fail",
                    "warnings": [{"warning": "...", "error_id": 52, "error_category": 10, "error_severity": 2}]}],
       "test_summary": {"status": "Fail"}}]}]},
     "entity_groups": [{"entity_group": "GPU", "entity_group_id": 1, "entities": [{"entity_id": 0}]}],
     "metadata": {"version": "4.4.2", "Driver Version Detected": "570.172.08"}}

  A test that did not run keeps its name with no results; a WARN result is printed as "Fail" (the error's
  severity tells them apart: healthcheck/severity.py).

DCGM 3 and older (dcgmi 3.x, and nvvs's own JSON)::

    {"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [{"name": "Denylist",
       "results": [{"status": "Pass"}]}]}, {"category": "Hardware", "tests": [{"name": "GPU Memory",
       "results": [{"gpu_id": "0", "status": "Pass"}]}]}], "version": "3.1.0"},
     "version": "3.3.9", "Driver Version Detected": "535.x", "GPU Device IDs": ["2330", ...]}

  Deployment checks are node-wide (they count as the test ``software`` on every GPU of the run); per-GPU
  tests use display names ("GPU Memory", "Targeted Stress") and ``gpu_id``/``gpu_ids`` (a number, or a
  string "0,1,2"); a GPU on which a test did not run has no entry; nvvs writes upper-case statuses and
  may leave ``null`` entries in arrays.

Either may be preceded by log lines ("Successfully ran diagnostic for group.", a warning); a runtime
error is ``{"DCGM [GPU ]Diagnostic": {"version": "...", "runtime_error": "..."}}``.

``dcgmi health -c -j`` has one shape in DCGM 3.x and 4.x (``Health::GenerateOutputFromResponse`` through
``DcgmiOutputJson``)::

    {"header": ["Health Monitor Report"], "body": {"Overall Health": {"value": "Healthy"},
     "GPU": {"children": {"3": {"value": "Failure", "children": {"Errors": {"children":
     {"Memory system": {"value": "Failure", "overflow": ["message in", "pieces"]}}}}}}}}}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

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

# The DCGM major the health-check image ships (healthcheck/Dockerfile); the parser reads 3 and 4 alike.
IMAGE_DCGM_MAJOR = 4
GPU_ENTITY_GROUP_ID = 1  # DCGM_FE_GPU
DCGM4_KEY, DCGM3_KEY = "DCGM Diagnostic", "DCGM GPU Diagnostic"

# Wall-clock limits per diag level; a level-3/4 run is long by design. The recovery deadline is 20 min.
DEFAULT_DIAG_TIMEOUT_S = {1: 300.0, 2: 900.0, 3: 3600.0, 4: 7200.0}

_STATUS: dict[str, ResultStatus] = {
    "pass": "pass", "fail": "fail", "warn": "warn", "warning": "warn", "skip": "skip", "skipped": "skip",
    "not run": "not_run", "notrun": "not_run", "not_run": "not_run",
}
# DCGM 3 display names -> the canonical test names DCGM 4 (and `dcgmi diag -r <test>`) use.
_ALIASES = {"gpu memory": "memory", "eud test": "eud", "cpu eud test": "cpu_eud", "sm stress": "sm_stress"}
DEPLOYMENT_CATEGORY = "deployment"
SOFTWARE_TEST = "software"


class _BadDocument(ValueError):
    """The document is not what dcgmi writes; the message says where."""


# ---- running ----------------------------------------------------------------------------------------------
def run_diag(dcgmi: str, level: int, *, timeout_s: float, runner: Runner) -> tuple[DiagOutcome, float]:
    result = runner([dcgmi, "diag", "-r", str(level), "-j"], timeout_s)
    return interpret_diag(result), result.duration_s


def run_health(
    dcgmi: str, *, sample_s: float, timeout_s: float, runner: Runner, sleep: Callable[[float], None]
) -> tuple[HealthOutcome, float]:
    """Set every health watch, let them sample, then ask for the report."""
    failed, took = set_health_watches(dcgmi, timeout_s=timeout_s, runner=runner)
    if failed is not None:
        return failed, took
    sleep(sample_s)
    check = runner([dcgmi, "health", "-c", "-j"], timeout_s)
    return interpret_health(check), took + sample_s + check.duration_s


def set_health_watches(dcgmi: str, *, timeout_s: float, runner: Runner) -> tuple[Inconclusive | None, float]:
    """``dcgmi health -s a``: None when set, else why not; and how long it took."""
    watches = runner([dcgmi, "health", "-s", "a"], timeout_s)
    if watches.ran and watches.returncode == 0:
        return None, watches.duration_s
    reason = f"setting health watches failed: {watches.describe()}"
    return Inconclusive("dcgm_health", reason), watches.duration_s


# ---- reading the diag (pure) ------------------------------------------------------------------------------
def interpret_diag(result: CommandResult) -> DiagOutcome:
    if not result.ran:
        return Inconclusive("dcgm_diag", result.describe())
    raw = json_document(result.stdout, (DCGM4_KEY, DCGM3_KEY))
    if raw is None:
        return Inconclusive("dcgm_diag", f"no diagnostic JSON from dcgmi diag ({result.describe()})")
    outcome = parse_diag(raw)
    if isinstance(outcome, DiagReport) and result.returncode != 0 and not _any_failed(outcome):
        # dcgmi exits non-zero when a test fails; non-zero with nothing failed means we cannot trust it.
        return Inconclusive("dcgm_diag", f"dcgmi diag exited {result.returncode} but reported no failure")
    return outcome


def parse_diag(raw: dict[str, Any]) -> DiagOutcome:
    """Either family, told by its top-level key; anything else is inconclusive with the reason."""
    raw = _without_nulls(raw)
    try:
        if isinstance(raw.get(DCGM4_KEY), dict):
            return _dcgm4(raw)
        if isinstance(raw.get(DCGM3_KEY), dict):
            return _dcgm3(raw)
    except _BadDocument as exc:
        return Inconclusive("dcgm_diag", str(exc))
    return Inconclusive("dcgm_diag", f"not a dcgmi diag document (keys: {', '.join(sorted(raw)) or 'none'})")


def _dcgm4(raw: dict[str, Any]) -> DiagOutcome:
    root = raw[DCGM4_KEY]
    metadata = _dict(raw.get("metadata"), "metadata")
    version = _text(metadata.get("version")) or _text(root.get("version"))
    if root.get("runtime_error"):
        return Inconclusive("dcgm_diag", f"dcgmi diag runtime error: {str(root['runtime_error']).strip()}")
    results = [r for category, test in _tests(root) for r in _dcgm4_test(category, test)]
    if not results:
        return Inconclusive("dcgm_diag", "dcgmi diag ran no test")
    entities = [e for g in _list(raw.get("entity_groups"), "entity_groups") if _is_gpu_group(g)
                for e in _list(_dict(g, "entity_groups[]").get("entities"), "entities")]
    listed = {_int(_dict(e, "entities[]").get("entity_id"), "entity_id") for e in entities}
    gpu_ids = tuple(sorted(listed or {r.gpu for r in results if r.gpu is not None}))
    serials = {_int(e["entity_id"], "entity_id"): str(e["serial_num"]) for e in entities
               if e.get("serial_num") and not str(e["serial_num"]).startswith("<<<")}
    driver = _text(metadata.get("Driver Version Detected"))
    return DiagReport(version, driver, gpu_ids, tuple(results), serials, format="dcgm4")


def _dcgm4_test(category: str, test: dict[str, Any]) -> list[DiagResult]:
    name = _canonical(_text(test.get("name")) or "?")
    raw_results = _list(test.get("results"), f"{name}.results")
    summary = test.get("test_summary")
    if not raw_results and summary is None:
        return [DiagResult(name, category, None, "not_run")]  # dcgmi keeps the name of a test it did not run
    per_gpu = [_result(name, category, _dict(r, f"{name}.results[]")) for r in raw_results]
    ran = [r for r in per_gpu if r.gpu is not None or r.status == "fail"]
    if isinstance(summary, dict):
        wide = _result(name, category, summary, gpu=None)
        # A test-wide failure that no GPU result carries (an error not tied to a GPU) still counts; so does a
        # test-wide skip when no GPU reported at all.
        unreported_failure = wide.status == "fail" and not any(r.status == "fail" for r in ran)
        if unreported_failure or (wide.status in ("skip", "not_run") and not ran):
            ran.append(wide)
    return ran


def _dcgm3(raw: dict[str, Any]) -> DiagOutcome:
    root = raw[DCGM3_KEY]
    version = _text(raw.get("version")) or _text(root.get("version"))
    if root.get("runtime_error"):
        return Inconclusive("dcgm_diag", f"dcgmi diag runtime error: {str(root['runtime_error']).strip()}")
    tests = list(_tests(root))
    run_gpus = _dcgm3_gpus(raw, tests)
    results = [r for category, test in tests for r in _dcgm3_test(category, test, run_gpus)]
    if not results:
        return Inconclusive("dcgm_diag", "dcgmi diag ran no test")
    driver = _text(raw.get("Driver Version Detected")) or _text(root.get("Driver Version Detected"))
    serials = {int(k): str(v) for k, v in _dict(raw.get("GPU Device Serials"), "GPU Device Serials").items()
               if str(k).isdigit()}
    return DiagReport(version, driver, tuple(sorted(run_gpus)), tuple(results), serials, format="dcgm3")


def _dcgm3_gpus(raw: dict[str, Any], tests: list[tuple[str, dict[str, Any]]]) -> set[int]:
    """The GPUs of the run: the device list dcgmi prints, and every GPU a result names."""
    gpus = set(range(len(_list(raw.get("GPU Device IDs"), "GPU Device IDs"))))
    gpus |= {int(k) for k in _dict(raw.get("GPU Device Serials"), "GPU Device Serials") if str(k).isdigit()}
    for _category, test in tests:
        for result in _list(test.get("results"), "results"):
            gpus |= set(_gpu_ids(_dict(result, "results[]")))
    return gpus


def _dcgm3_test(category: str, test: dict[str, Any], run_gpus: set[int]) -> list[DiagResult]:
    name = _text(test.get("name")) or "?"
    node_wide = category.lower() == DEPLOYMENT_CATEGORY
    canonical = SOFTWARE_TEST if node_wide else _canonical(name)
    out: list[DiagResult] = []
    for raw_result in _list(test.get("results"), f"{name}.results"):
        raw_result = _dict(raw_result, f"{name}.results[]")
        named = _gpu_ids(raw_result)
        # A deployment check judges the node: it counts for every GPU of the run (the gpu_id dcgmi 3 adds to a
        # deployment result is the GPU of its first warning, not the scope of the check).
        gpus = sorted(run_gpus) if node_wide else named
        one = _result(canonical, category, raw_result, gpu=None)
        subtest = name if node_wide else None
        out.extend(DiagResult(canonical, category, gpu, one.status, one.errors, subtest) for gpu in gpus)
        if not gpus:
            out.append(DiagResult(canonical, category, None, one.status, one.errors, subtest))
    return out


def _tests(root: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for category in _list(root.get("test_categories"), "test_categories"):
        category = _dict(category, "test_categories[]")
        name = _text(category.get("category")) or "?"
        for test in _list(category.get("tests"), f"{name}.tests"):
            yield name, _dict(test, f"{name}.tests[]")


_UNSET: Any = object()


def _result(test: str, category: str, raw: dict[str, Any], gpu: Any = _UNSET) -> DiagResult:
    word = str(raw.get("status", "")).strip().lower()
    if word not in _STATUS:
        raise _BadDocument(f"unrecognised status {raw.get('status')!r} in dcgmi test {test!r}")
    if gpu is _UNSET:
        gpu = _int(raw.get("entity_id"), "entity_id") if _is_gpu_group(raw) else None
    errors = tuple(_error(_dict(w, "warnings[]")) for w in _list(raw.get("warnings"), "warnings"))
    return DiagResult(test, category, gpu, _STATUS[word], errors)


def _error(raw: dict[str, Any]) -> DiagError:
    # dcgmi 3 writes a deployment check's message under "warnings" inside the warning (NVVS_WARNINGS).
    message = raw.get("warning", raw.get("warnings", ""))
    return DiagError(_opt_int(raw.get("error_id")), _opt_int(raw.get("error_severity")),
                     _opt_int(raw.get("error_category")), str(message).strip())


def _gpu_ids(raw: dict[str, Any]) -> list[int]:
    value = raw.get("gpu_ids", raw.get("gpu_id"))
    if value is None or value == "":
        return []
    if isinstance(value, int):
        return [value]
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise _BadDocument(f"unexpected GPU list {value!r} in a dcgmi 3 result")
    return [int(p) for p in parts]


def _canonical(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key.replace(" ", "_"))


def _is_gpu_group(raw: Any) -> bool:
    return isinstance(raw, dict) and (raw.get("entity_group") == "GPU"
                                      or raw.get("entity_group_id") == GPU_ENTITY_GROUP_ID)


def _any_failed(report: DiagReport) -> bool:
    return any(r.status == "fail" for r in report.results)


# ---- reading the health report (pure) ---------------------------------------------------------------------
def interpret_health(result: CommandResult) -> HealthOutcome:
    if not result.ran:
        return Inconclusive("dcgm_health", result.describe())
    raw = json_document(result.stdout, ("body",))
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
            message = " ".join(str(p).strip() for p in (detail.get("overflow") or []))
            where = system if gpu is not None else f"{group_name} {entity_id} {system}"
            found.append(HealthIncident(gpu, where, word, message))
    return found


_HEALTH_WORDS: dict[str, Literal["pass", "warn", "fail"]] = {
    "Healthy": "pass", "Warning": "warn", "Failure": "fail",
}


def _health_word(value: Any) -> Literal["pass", "warn", "fail"] | None:
    return _HEALTH_WORDS.get(str(value))


# ---- JSON helpers -----------------------------------------------------------------------------------------
def json_document(text: str, keys: Iterable[str]) -> dict[str, Any] | None:
    """The first JSON object in dcgmi's stdout that has one of ``keys``; log lines around it are ignored.

    A line before the JSON may itself hold braces (a log line), so each ``{`` is tried in turn.
    """
    wanted = tuple(keys)
    decoder = json.JSONDecoder()
    for attempt, match in enumerate(re.finditer(r"\{", text)):
        if attempt >= 64:
            break
        try:
            value, _end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and any(k in value for k in wanted):
            return value
    return None


def _without_nulls(value: Any) -> Any:
    """nvvs leaves ``null`` entries in arrays where a test was left out (DCGM 3.1.0's own recording)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadDocument(f"unexpected dcgmi diag JSON at {where}: expected an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadDocument(f"unexpected dcgmi diag JSON at {where}: expected a list")
    return value


def _int(value: Any, where: str) -> int:
    number = _opt_int(value)
    if number is None:
        raise _BadDocument(f"unexpected dcgmi diag JSON at {where}: expected a number, got {value!r}")
    return number


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None
