"""``gpu-recovery healthcheck``: the DCGM agent that runs on a GPU node (as an ECS task, or by hand)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from gpu_recovery.commands.common import add_aws_options

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

EPILOG = """\
exit codes: 0 the node is usable (healthy, or an application fault), 1 the node needs repair
(hardware fault), 2 inconclusive (never read as healthy).

environment (set by the recovery consumer as container overrides; flags win):
  GPU_RECOVERY_CHECK_LEVEL  GPU_RECOVERY_INCIDENT_ID  GPU_RECOVERY_NODE_ARN  GPU_RECOVERY_INSTANCE_ID
  GPU_RECOVERY_CHECK_TASK_ARN  GPU_RECOVERY_SINCE  GPU_RECOVERY_EXPECTED_GPUS  GPU_RECOVERY_DCGMI
  GPU_RECOVERY_KERNEL_LOG  GPU_RECOVERY_DIAG_TIMEOUT_S  GPU_RECOVERY_STDOUT_ONLY  GPU_RECOVERY_STREAM_NAME
See docs/healthcheck.md."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "healthcheck", help="diagnose this GPU node with DCGM, NVML and the kernel log; report the verdict",
        description="Runs dcgmi diag and dcgmi health, reads NVML counters and XIDs from the kernel log, "
        "decides healthy / application_fault / hardware_fault / inconclusive, prints the "
        "HealthCheckReported event as JSON and writes it to the Kinesis stream.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--level", type=int, choices=(1, 2, 3, 4),
                        help="dcgmi diag level (GPU_RECOVERY_CHECK_LEVEL; default 2)")
    parser.add_argument("--dcgmi", help="the dcgmi binary to run (GPU_RECOVERY_DCGMI; default: dcgmi on PATH)")
    parser.add_argument("--kernel-log", help="read XIDs from this file instead of dmesg/journal")
    parser.add_argument("--since", help="fault time, ISO 8601: ignore older XID lines (GPU_RECOVERY_SINCE)")
    parser.add_argument("--expected-gpus", type=int, help="GPUs this node should have")
    parser.add_argument("--node-arn", help="container instance ARN (GPU_RECOVERY_NODE_ARN)")
    parser.add_argument("--instance-id", help="EC2 instance id (GPU_RECOVERY_INSTANCE_ID)")
    parser.add_argument("--incident-id", help="incident this check belongs to (GPU_RECOVERY_INCIDENT_ID)")
    parser.add_argument("--check-task-arn", help="this task's ARN (default: from the ECS task metadata)")
    parser.add_argument("--diag-timeout", type=float, help="seconds before dcgmi diag counts as hung")
    parser.add_argument("--health-sample", type=float, help="seconds to let health watches sample (10)")
    parser.add_argument("--no-health", action="store_true", default=None, help="skip dcgmi health")
    parser.add_argument("--stdout-only", action="store_true", default=None,
                        help="print the event, write nothing to the stream")
    parser.add_argument("--put-attempts", type=int, help="tries to put the event before giving up (5)")
    add_aws_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    import time
    from datetime import UTC, datetime

    from healthcheck.agent import Probes, run_check
    from healthcheck.config import load_config
    from healthcheck.identity import resolve
    from healthcheck.nvml import PynvmlApi
    from healthcheck.process import SubprocessRunner

    config = load_config(
        level=args.level, dcgmi=args.dcgmi, kernel_log=args.kernel_log, since=args.since,
        expected_gpus=args.expected_gpus, node_arn=args.node_arn, instance_id=args.instance_id,
        incident_id=args.incident_id, check_task_arn=args.check_task_arn, diag_timeout_s=args.diag_timeout,
        health_sample_s=args.health_sample, skip_health=args.no_health, stdout_only=args.stdout_only,
        put_attempts=args.put_attempts,
    )
    identity = resolve(node_arn=config.node_arn, instance_id=config.instance_id,
                       check_task_arn=config.check_task_arn, incident_id=config.incident_id,
                       environ=os.environ)
    probes = Probes(runner=SubprocessRunner(grace_s=config.kill_grace_s), nvml=PynvmlApi(), sleep=time.sleep,
                    now=lambda: datetime.now(UTC), monotonic=time.monotonic)
    writer = None if config.stdout_only else _writer_factory(args)
    return run_check(config, probes, identity, writer=writer, out=sys.stdout).exit_code


def _writer_factory(args: argparse.Namespace) -> Any:
    """Builds the Kinesis writer on first use, inside the agent's retry loop, so that a bad setting or a
    missing credential is one more failed attempt, not a crash that loses the exit code."""
    made: list[Any] = []

    def writer() -> Any:
        if not made:
            from consumers.adapters.kinesis import KinesisStreamWriter
            from gpu_recovery.commands.common import settings_from

            settings = settings_from(args)
            made.append(KinesisStreamWriter(_kinesis_client(settings), settings.stream_name))
        return made[0]

    return writer


def _kinesis_client(settings: Any) -> KinesisClient:
    """Short timeouts and few SDK retries: the agent retries itself, within the 20-minute check deadline."""
    import os

    import boto3
    from botocore.config import Config

    from gpu_recovery.aws import LOCAL_CREDENTIALS

    kwargs: dict[str, Any] = {
        "region_name": settings.region,
        "config": Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
    }
    endpoint = settings.kinesis_endpoint_url or settings.endpoint_url
    if endpoint:
        kwargs["endpoint_url"] = endpoint
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            kwargs.update(LOCAL_CREDENTIALS)  # a local endpoint needs some credentials, never real ones
    return boto3.session.Session().client("kinesis", **kwargs)
