"""The severity table: every DCGM error severity and the error ids that say more map to one outcome, and
the table agrees with DCGM's own (dcgm_errors.h / dcgm_errors.c) and with docs/healthcheck.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from healthcheck.findings import SEVERITY_NAMES, DiagError
from healthcheck.severity import BY_ID, ERRORS, FIXES, SEVERITY_OUTCOME, error_name, judge, judge_failure

DOC = Path(__file__).resolve().parents[2] / "docs" / "healthcheck.md"


@pytest.mark.parametrize(("severity", "outcome"), [
    (2, "quarantine"), (6, "reboot"), (4, "reboot"), (5, "reconfigure"), (1, "warn"), (3, "reboot"), (0, "reboot"),
])
def test_each_severity_has_its_outcome(severity: int, outcome: str) -> None:
    assert judge(DiagError(1000, severity, None, "x")).outcome == outcome


def test_every_severity_dcgm_defines_is_in_the_table() -> None:
    assert set(SEVERITY_OUTCOME) == set(SEVERITY_NAMES) == set(range(7))


def test_the_id_table_is_dcgms() -> None:
    # Spot checks against dcgmErrorMeta (DCGM 4.6.0): ids, names and severities
    assert ERRORS[29] == ("PERSISTENCE_MODE", 5) and ERRORS[52] == ("FAULTY_MEMORY", 2)
    assert ERRORS[30] == ("LOW_BANDWIDTH", 4) and ERRORS[85] == ("PENDING_ROW_REMAP", 6)
    assert ERRORS[120] == ("FALLEN_OFF_BUS", 2) and max(ERRORS) == 132 and len(ERRORS) == 133
    assert error_name(29) == "DCGM_FR_PERSISTENCE_MODE" and error_name(999) == "error 999"


def test_ids_that_say_more_than_their_severity() -> None:
    assert judge(DiagError(44, 4, 16, "internal")).outcome == "inconclusive"  # DCGM's own error
    assert judge(DiagError(117, 5, 3, "skipped")).outcome == "untested"
    assert judge(DiagError(126, 2, 5, "node requires reboot")).outcome == "reboot"
    assert judge(DiagError(108, 1, 3, "fabric manager")).outcome == "reconfigure"


def test_a_config_error_carries_its_fix_or_dcgms_own_words() -> None:
    assert "nvidia-persistenced" in judge(DiagError(29, 5, 8, "Persistence mode is disabled")).fix
    assert judge(DiagError(37, 5, 3, "Field type cannot be supported")).fix == "Field type cannot be supported"
    assert all(ERRORS[i][1] == 5 or i in BY_ID for i in FIXES)


def test_a_failure_takes_its_strongest_error_and_none_means_unknown() -> None:
    mixed = (DiagError(29, 5, 8, "pm off"), DiagError(52, 2, 10, "faulty memory"))
    assert judge_failure(mixed).outcome == "quarantine"
    assert judge_failure(()).outcome == "reboot"


def test_the_documented_table_names_every_severity_and_outcome() -> None:
    # GIVEN docs/healthcheck.md's severity table
    text = DOC.read_text()
    section = text[text.index("## Severity table"):]
    section = section[:section.index("\n## ", 5)]
    rows = dict(re.findall(r"^\| `?(NONE|MONITOR|ISOLATE|UNKNOWN|TRIAGE|CONFIG|RESET)`? \([0-6]\) \| ([a-z_]+)",
                           section, re.M))
    # THEN every severity is there with the outcome the code gives it
    assert rows == {SEVERITY_NAMES[s]: o for s, o in SEVERITY_OUTCOME.items()}
    for error_id in BY_ID:
        assert f"| {error_id} " in section, error_id
