"""``gpu-recovery healthcheck`` as the ECS task and an operator run it: env overrides, flags, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from consumers.adapters.kinesis_reader import list_shards, read_shard
from events_schema.decode import decode
from events_schema.envelope import OurEvent
from events_schema.events import HealthCheckReported
from gpu_recovery.cli import main
from tests.healthcheck.fakes import KERNEL, NODE_ARN, FakeDevice, FakeNvml


def printed_event(out: str) -> HealthCheckReported:
    event = decode(out.strip().splitlines()[-1])
    assert isinstance(event, OurEvent) and isinstance(event.data, HealthCheckReported)
    return event.data


@pytest.fixture
def task_env(monkeypatch: pytest.MonkeyPatch, dcgmi_calls: Callable[[], list[list[str]]]) -> None:
    """What the recovery consumer sets as container overrides on the check task."""
    monkeypatch.setenv("GPU_RECOVERY_CHECK_LEVEL", "1")
    monkeypatch.setenv("GPU_RECOVERY_INCIDENT_ID", "inc-42")
    monkeypatch.setenv("GPU_RECOVERY_NODE_ARN", NODE_ARN)
    monkeypatch.setenv("GPU_RECOVERY_INSTANCE_ID", "i-0123456789abcdef0")
    monkeypatch.setenv("GPU_RECOVERY_EXPECTED_GPUS", "8")
    monkeypatch.setenv("GPU_RECOVERY_HEALTH_SAMPLE_S", "0")
    monkeypatch.setenv("GPU_RECOVERY_KERNEL_LOG", str(KERNEL / "clean.log"))
    monkeypatch.setenv("FAKE_DCGMI_SCENARIO", "all_pass")
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)


def test_registering_the_command_imports_nothing_heavy() -> None:
    # GIVEN a fresh interpreter building the parser (what --help does)
    code = ("import sys; from gpu_recovery.cli import build_parser; build_parser(); "
            "print([m for m in sys.modules if m.split('.')[0] in ('healthcheck', 'pynvml')])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # THEN neither the agent nor NVML was imported (boto3 is the CLI-wide rule, tested there)
    assert loaded.strip() == "[]"


def test_env_overrides_drive_the_check_and_no_nvml_here_means_inconclusive(
    task_env: None, dcgmi_calls: Callable[[], list[list[str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN this machine, which has no NVIDIA driver, and the task's environment
    # WHEN the command runs, printing only
    code = main(["healthcheck", "--stdout-only"])
    # THEN the level-1 diag ran, and the missing NVML library makes it inconclusive: exit 2, never healthy
    report = printed_event(capsys.readouterr().out)
    assert code == 2 and report.verdict == "inconclusive" and "NVML" in report.reason
    assert (report.level, report.incident_id, report.node_arn) == (1, "inc-42", NODE_ARN)
    assert dcgmi_calls()[0] == ["diag", "-r", "1", "-j"]


def test_flags_win_over_the_environment_and_the_event_lands_in_the_stream(
    task_env: None, kinesis: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a stream, a node with healthy GPUs (NVML faked) and a level given on the command line
    kinesis.create_stream(StreamName="checks", ShardCount=1)
    monkeypatch.setattr("healthcheck.nvml.PynvmlApi", FakeNvml)
    # WHEN the command runs
    code = main(["healthcheck", "--level", "2", "--incident-id", "inc-43", "--stream-name", "checks"])
    # THEN exit 0, and the printed event is the one in the stream, keyed by the node
    printed = printed_event(capsys.readouterr().out)
    assert code == 0 and (printed.verdict, printed.level, printed.incident_id) == ("healthy", 2, "inc-43")
    shard = list_shards(kinesis, "checks")[0]["ShardId"]
    (record,) = [r for batch in read_shard(kinesis, "checks", shard) for r in batch.records]
    assert record.partition_key == NODE_ARN
    assert json.loads(record.data)["data"]["incident_id"] == "inc-43"


def test_bad_level_in_the_environment_is_a_config_error_naming_the_variable(
    task_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPU_RECOVERY_CHECK_LEVEL", "9")
    assert main(["healthcheck", "--stdout-only"]) == 2
    assert "GPU_RECOVERY_CHECK_LEVEL" in capsys.readouterr().err


def test_the_check_key_and_secret_from_the_overrides_sign_the_report_and_the_secret_stays_hidden(
    task_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from events_schema.proof import check_secret, verify_report

    # GIVEN the check key and secret recovery passes in the StartTask overrides
    secret = check_secret(b"recovery-key", "inc-42:check:1")
    monkeypatch.setenv("GPU_RECOVERY_CHECK_KEY", "inc-42:check:1")
    monkeypatch.setenv("GPU_RECOVERY_CHECK_SECRET", secret)
    # WHEN the check runs
    main(["healthcheck", "--stdout-only"])
    out, err = capsys.readouterr()
    # THEN the printed report carries the key and a proof that verifies; the secret is nowhere in the output
    event = decode(out.strip().splitlines()[-1])
    assert isinstance(event, OurEvent) and isinstance(event.data, HealthCheckReported)
    assert event.data.check_key == "inc-42:check:1" and verify_report(secret, event.envelope.data)
    assert secret not in out and secret not in err
    # AND the host's boot time is reported (this machine's /proc/stat)
    assert event.data.boot_time is not None


def test_a_configuration_fault_exits_3_never_1(
    task_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the GB10 whose level-1 diag fails for persistence mode off (DCGM severity CONFIG)
    monkeypatch.setenv("FAKE_DCGMI_SCENARIO", "gb10_persistence_mode_off")
    monkeypatch.setenv("GPU_RECOVERY_EXPECTED_GPUS", "1")
    monkeypatch.setattr("healthcheck.nvml.PynvmlApi", lambda: FakeNvml(devices=[FakeDevice(0)]))
    # WHEN checked
    code = main(["healthcheck", "--stdout-only"])
    # THEN misconfigured, reconfigure, exit 3: a reader of the exit code alone does not reboot
    report = printed_event(capsys.readouterr().out)
    assert code == 3 and (report.verdict, report.recommended_action) == ("misconfigured", "reconfigure")
    assert "nvidia-smi -pm 1" in report.fix
