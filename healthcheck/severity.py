"""DCGM error severity -> what to do about it: the one table (docs/healthcheck.md, "Severity table").

Every DCGM diagnostic error carries an id (``dcgmError_t``), a category and a severity
(``dcgmErrorSeverity_t``), from ``dcgmlib/dcgm_errors.h`` and the per-id table ``dcgmErrorMeta`` in
``dcgmlib/src/dcgm_errors.c`` of NVIDIA's DCGM repository (4.6.0). The severity in the document wins; the
table below fills it in when a document leaves it out (older DCGM 3 documents). A few ids say more than
their severity (a test that was skipped, aborted, or DCGM's own internal error): those are decided by id.

Severity -> outcome (why):
- ISOLATE -> quarantine: "Cannot perform workload. GPU should be isolated."
- RESET -> reboot: "Drain and reset GPU" (a node reboot resets every GPU).
- TRIAGE -> reboot: DCGM's triage advice is "reset GPU, restart DCGM, rerun diagnostics"; the reboot and
  the post-reboot check do exactly that, and recovery quarantines a second fault within its window.
- CONFIG -> reconfigure: "This error can be configured"; a reboot would not change a setting, so never.
- MONITOR -> warn: "Can perform workload, but needs to be monitored" (dcgmi 4 prints a warning as "Fail"
  in JSON, so the severity is how a warning is told from a failure).
- UNKNOWN, NONE or none given -> reboot: conservative, as for an XID not in the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from healthcheck.findings import (
    SEVERITY_CONFIG,
    SEVERITY_ISOLATE,
    SEVERITY_MONITOR,
    SEVERITY_NAMES,
    SEVERITY_NONE,
    SEVERITY_RESET,
    SEVERITY_TRIAGE,
    SEVERITY_UNKNOWN,
    DiagError,
)

Outcome = Literal["quarantine", "reboot", "reconfigure", "warn", "untested", "inconclusive"]
# Strongest first: what a failed result with several errors becomes.
OUTCOME_ORDER: tuple[Outcome, ...] = ("quarantine", "reboot", "reconfigure", "inconclusive", "untested", "warn")

NONE, MONITOR, ISOLATE, UNKNOWN, TRIAGE, CONFIG, RESET = (
    SEVERITY_NONE, SEVERITY_MONITOR, SEVERITY_ISOLATE, SEVERITY_UNKNOWN, SEVERITY_TRIAGE, SEVERITY_CONFIG,
    SEVERITY_RESET,
)

SEVERITY_OUTCOME: dict[int, Outcome] = {
    ISOLATE: "quarantine", RESET: "reboot", TRIAGE: "reboot", CONFIG: "reconfigure", MONITOR: "warn",
    UNKNOWN: "reboot", NONE: "reboot",
}

# dcgmErrorMeta (DCGM 4.6.0 dcgm_errors.c): id -> (name without DCGM_FR_, severity).
ERRORS: dict[int, tuple[str, int]] = {
    0: ('OK', UNKNOWN),
    1: ('UNKNOWN', UNKNOWN),
    2: ('UNRECOGNIZED', UNKNOWN),
    3: ('PCI_REPLAY_RATE', ISOLATE),
    4: ('VOLATILE_DBE_DETECTED', ISOLATE),
    5: ('VOLATILE_SBE_DETECTED', MONITOR),
    6: ('PENDING_PAGE_RETIREMENTS', RESET),
    7: ('RETIRED_PAGES_LIMIT', ISOLATE),
    8: ('RETIRED_PAGES_DBE_LIMIT', ISOLATE),
    9: ('CORRUPT_INFOROM', TRIAGE),
    10: ('CLOCKS_EVENT_THERMAL', MONITOR),
    11: ('POWER_UNREADABLE', MONITOR),
    12: ('CLOCKS_EVENT_POWER', MONITOR),
    13: ('NVLINK_ERROR_THRESHOLD', ISOLATE),
    14: ('NVLINK_DOWN', TRIAGE),
    15: ('NVSWITCH_FATAL_ERROR', ISOLATE),
    16: ('NVSWITCH_NON_FATAL_ERROR', MONITOR),
    17: ('NVSWITCH_DOWN', MONITOR),
    18: ('NO_ACCESS_TO_FILE', CONFIG),
    19: ('NVML_API', MONITOR),
    20: ('DEVICE_COUNT_MISMATCH', CONFIG),
    21: ('BAD_PARAMETER', UNKNOWN),
    22: ('CANNOT_OPEN_LIB', TRIAGE),
    23: ('DENYLISTED_DRIVER', CONFIG),
    24: ('NVML_LIB_BAD', ISOLATE),
    25: ('GRAPHICS_PROCESSES', RESET),
    26: ('HOSTENGINE_CONN', MONITOR),
    27: ('FIELD_QUERY', MONITOR),
    28: ('BAD_CUDA_ENV', CONFIG),
    29: ('PERSISTENCE_MODE', CONFIG),
    30: ('LOW_BANDWIDTH', TRIAGE),
    31: ('HIGH_LATENCY', TRIAGE),
    32: ('CANNOT_GET_FIELD_TAG', MONITOR),
    33: ('FIELD_VIOLATION', ISOLATE),
    34: ('FIELD_THRESHOLD', MONITOR),
    35: ('FIELD_VIOLATION_DBL', ISOLATE),
    36: ('FIELD_THRESHOLD_DBL', ISOLATE),
    37: ('UNSUPPORTED_FIELD_TYPE', TRIAGE),
    38: ('FIELD_THRESHOLD_TS', ISOLATE),
    39: ('FIELD_THRESHOLD_TS_DBL', ISOLATE),
    40: ('THERMAL_VIOLATIONS', MONITOR),
    41: ('THERMAL_VIOLATIONS_TS', MONITOR),
    42: ('TEMP_VIOLATION', MONITOR),
    43: ('CLOCKS_EVENT_VIOLATION', MONITOR),
    44: ('INTERNAL', TRIAGE),
    45: ('PCIE_GENERATION', TRIAGE),
    46: ('PCIE_WIDTH', CONFIG),
    47: ('ABORTED', CONFIG),
    48: ('TEST_DISABLED', CONFIG),
    49: ('CANNOT_GET_STAT', TRIAGE),
    50: ('STRESS_LEVEL', TRIAGE),
    51: ('CUDA_API', MONITOR),
    52: ('FAULTY_MEMORY', ISOLATE),
    53: ('CANNOT_SET_WATCHES', MONITOR),
    54: ('CUDA_UNBOUND', TRIAGE),
    55: ('ECC_DISABLED', CONFIG),
    56: ('MEMORY_ALLOC', TRIAGE),
    57: ('CUDA_DBE', ISOLATE),
    58: ('MEMORY_MISMATCH', ISOLATE),
    59: ('CUDA_DEVICE', TRIAGE),
    60: ('ECC_UNSUPPORTED', CONFIG),
    61: ('ECC_PENDING', MONITOR),
    62: ('MEMORY_BANDWIDTH', TRIAGE),
    63: ('TARGET_POWER', TRIAGE),
    64: ('API_FAIL', TRIAGE),
    65: ('API_FAIL_GPU', TRIAGE),
    66: ('CUDA_CONTEXT', TRIAGE),
    67: ('DCGM_API', TRIAGE),
    68: ('CONCURRENT_GPUS', CONFIG),
    69: ('TOO_MANY_ERRORS', MONITOR),
    70: ('NVLINK_CRC_ERROR_THRESHOLD', ISOLATE),
    71: ('NVLINK_ERROR_CRITICAL', ISOLATE),
    72: ('ENFORCED_POWER_LIMIT', CONFIG),
    73: ('MEMORY_ALLOC_HOST', TRIAGE),
    74: ('GPU_OP_MODE', MONITOR),
    75: ('NO_MEMORY_CLOCKS', MONITOR),
    76: ('NO_GRAPHICS_CLOCKS', MONITOR),
    77: ('HAD_TO_RESTORE_STATE', TRIAGE),
    78: ('L1TAG_UNSUPPORTED', CONFIG),
    79: ('L1TAG_MISCOMPARE', ISOLATE),
    80: ('ROW_REMAP_FAILURE', RESET),
    81: ('UNCONTAINED_ERROR', ISOLATE),
    82: ('EMPTY_GPU_LIST', CONFIG),
    83: ('DBE_PENDING_PAGE_RETIREMENTS', RESET),
    84: ('UNCORRECTABLE_ROW_REMAP', RESET),
    85: ('PENDING_ROW_REMAP', RESET),
    86: ('BROKEN_P2P_MEMORY_DEVICE', ISOLATE),
    87: ('BROKEN_P2P_WRITER_DEVICE', ISOLATE),
    88: ('NVSWITCH_NVLINK_DOWN', ISOLATE),
    89: ('EUD_BINARY_PERMISSIONS', TRIAGE),
    90: ('EUD_NON_ROOT_USER', TRIAGE),
    91: ('EUD_SPAWN_FAILURE', TRIAGE),
    92: ('EUD_TIMEOUT', TRIAGE),
    93: ('EUD_ZOMBIE', TRIAGE),
    94: ('EUD_NON_ZERO_EXIT_CODE', TRIAGE),
    95: ('EUD_TEST_FAILED', ISOLATE),
    96: ('FILE_CREATE_PERMISSIONS', CONFIG),
    97: ('PAUSE_RESUME_FAILED', TRIAGE),
    98: ('PCIE_H_REPLAY_VIOLATION', ISOLATE),
    99: ('GPU_EXPECTED_NVLINKS_UP', TRIAGE),
    100: ('NVSWITCH_EXPECTED_NVLINKS_UP', TRIAGE),
    101: ('XID_ERROR', TRIAGE),
    102: ('SBE_VIOLATION', ISOLATE),
    103: ('DBE_VIOLATION', ISOLATE),
    104: ('PCIE_REPLAY_VIOLATION', ISOLATE),
    105: ('SBE_THRESHOLD_VIOLATION', ISOLATE),
    106: ('DBE_THRESHOLD_VIOLATION', ISOLATE),
    107: ('PCIE_REPLAY_THRESHOLD_VIOLATION', ISOLATE),
    108: ('CUDA_FM_NOT_INITIALIZED', MONITOR),
    109: ('SXID_ERROR', ISOLATE),
    110: ('GFLOPS_THRESHOLD_VIOLATION', TRIAGE),
    111: ('NAN_VALUE', ISOLATE),
    112: ('FABRIC_MANAGER_TRAINING_ERROR', CONFIG),
    113: ('BROKEN_P2P_PCIE_MEMORY_DEVICE', ISOLATE),
    114: ('BROKEN_P2P_PCIE_WRITER_DEVICE', ISOLATE),
    115: ('BROKEN_P2P_NVLINK_MEMORY_DEVICE', ISOLATE),
    116: ('BROKEN_P2P_NVLINK_WRITER_DEVICE', ISOLATE),
    117: ('TEST_SKIPPED', CONFIG),
    118: ('SRAM_THRESHOLD', ISOLATE),
    119: ('NVLINK_EFFECTIVE_BER_THRESHOLD', ISOLATE),
    120: ('FALLEN_OFF_BUS', ISOLATE),
    121: ('NVLINK_SYMBOL_BER_THRESHOLD', ISOLATE),
    122: ('IMEX_UNHEALTHY', ISOLATE),
    123: ('FABRIC_PROBE_STATE', MONITOR),
    124: ('BINARY_PERMISSIONS', TRIAGE),
    125: ('GPU_RECOVERY_RESET', RESET),
    126: ('GPU_RECOVERY_REBOOT', ISOLATE),
    127: ('GPU_RECOVERY_DRAIN_P2P', RESET),
    128: ('GPU_RECOVERY_DRAIN_RESET', RESET),
    129: ('NCCL_ERROR', RESET),
    130: ('RETEST_REQUESTED', TRIAGE),
    131: ('CONTAINED_ERROR', MONITOR),
    132: ('UNCORRECTABLE_ROW_REMAP_LIMIT', TRIAGE),
}

# Ids that decide by themselves, whatever their severity, and why.
BY_ID: dict[int, tuple[Outcome, str]] = {
    44: ("inconclusive", "DCGM's own internal error says nothing about the GPU"),
    47: ("untested", "the test was aborted before it finished"),
    48: ("untested", "the test is disabled for this GPU"),
    60: ("untested", "ECC is not supported by this SKU, so the memory test did not judge it"),
    67: ("inconclusive", "a DCGM API call failed; that says nothing about the GPU"),
    78: ("untested", "the L1 tag test is not supported by this SKU"),
    117: ("untested", "the test was skipped"),
    130: ("inconclusive", "DCGM asked for a retest before it gives results"),
    # DCGM tags "node requires reboot due to GPU fault" ISOLATE; its meaning is a reboot.
    126: ("reboot", "the GPU's recovery action is a node reboot"),
    # MONITOR in DCGM's table, but CUDA does not start on an NVSwitch system without the fabric manager.
    108: ("reconfigure", "the fabric manager is not running"),
}

# What to change on the node, for the configuration errors that have a known fix.
FIXES: dict[int, str] = {
    18: "give the check task read access to the file DCGM names",
    20: "the GPUs in /dev and in NVML disagree: check dmesg for a GPU the driver did not initialise, and the "
        "check task's device list",
    23: "unload and blacklist the nouveau driver (a driver on DCGM's denylist is loaded)",
    28: "remove the CUDA environment variables DCGM names from the check task's environment",
    29: "enable persistence mode on every GPU: run nvidia-persistenced at boot (or nvidia-smi -pm 1 as root)",
    46: "the PCIe link is narrower than the GPU supports: check the slot, riser and BIOS link settings",
    55: "enable ECC (nvidia-smi -e 1) and reset the GPU",
    68: "run the diagnostic on all of the node's GPUs together (give the check task every GPU)",
    72: "raise the enforced power limit back to the GPU's default (nvidia-smi -pl)",
    82: "give the check task the node's GPUs (it saw none)",
    96: "let the check task create files in DCGM's working directory",
    108: "start nvidia-fabricmanager (NVSwitch systems need it before CUDA works)",
    112: "restart nvidia-fabricmanager and read its log: the fabric did not finish training",
}


@dataclass(frozen=True, slots=True)
class Judgement:
    outcome: Outcome
    why: str
    fix: str = ""


def severity_of(error: DiagError) -> int:
    """The document's severity, else DCGM's table for the id, else UNKNOWN."""
    if error.severity is not None:
        return error.severity
    known = ERRORS.get(error.error_id) if error.error_id is not None else None
    return known[1] if known else UNKNOWN


def judge(error: DiagError) -> Judgement:
    if error.error_id in BY_ID:
        outcome, why = BY_ID[error.error_id]
        return Judgement(outcome, why, _fix(error) if outcome == "reconfigure" else "")
    severity = severity_of(error)
    outcome = SEVERITY_OUTCOME.get(severity, "reboot")
    why = f"DCGM severity {SEVERITY_NAMES.get(severity, severity)}"
    return Judgement(outcome, why, _fix(error) if outcome == "reconfigure" else "")


def judge_failure(errors: tuple[DiagError, ...]) -> Judgement:
    """A failed result: the strongest of its errors; a failure without any error is UNKNOWN (reboot)."""
    if not errors:
        return Judgement("reboot", "DCGM gave no error for the failure (severity UNKNOWN)")
    judged = [judge(e) for e in errors]
    return min(judged, key=lambda j: OUTCOME_ORDER.index(j.outcome))


def error_name(error_id: int | None) -> str:
    known = ERRORS.get(error_id) if error_id is not None else None
    return f"DCGM_FR_{known[0]}" if known else f"error {error_id}"


def _fix(error: DiagError) -> str:
    if error.error_id in FIXES:
        return FIXES[error.error_id]
    return error.message or f"change what {error_name(error.error_id)} names"
