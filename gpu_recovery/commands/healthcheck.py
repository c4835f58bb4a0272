"""``gpu-recovery healthcheck``: the DCGM agent that runs on a GPU node (as an ECS task, or by hand), and with
``--watch`` the node watcher that runs there as an ECS daemon service."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from gpu_recovery.commands.common import add_aws_options

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

EPILOG = """\
exit codes: 0 the node is usable (healthy, or an application fault), 1 the node needs repair
(hardware fault), 2 inconclusive (never read as healthy), 3 misconfigured (change a setting; never
reboot for it). --watch exits 0 on SIGTERM.

environment (set by the recovery consumer as container overrides; flags win):
  GPU_RECOVERY_CHECK_LEVEL  GPU_RECOVERY_INCIDENT_ID  GPU_RECOVERY_NODE_ARN  GPU_RECOVERY_INSTANCE_ID
  GPU_RECOVERY_CHECK_TASK_ARN  GPU_RECOVERY_CHECK_KEY  GPU_RECOVERY_CHECK_SECRET (signs the report; never
  a flag)  GPU_RECOVERY_SINCE  GPU_RECOVERY_EXPECTED_GPUS  GPU_RECOVERY_DCGMI  GPU_RECOVERY_KERNEL_LOG
  GPU_RECOVERY_DIAG_TIMEOUT_S  GPU_RECOVERY_STDOUT_ONLY  GPU_RECOVERY_STREAM_NAME
  GPU_RECOVERY_WATCH_INTERVAL_S  GPU_RECOVERY_WATCH_XID_REPEAT_S
See docs/healthcheck.md."""


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag value is one line and exit 2, never a usage dump or a traceback."""

    def error(self, message: str) -> NoReturn:
        print(f"gpu-recovery: error: {message} (see gpu-recovery healthcheck --help)", file=sys.stderr)
        raise SystemExit(2)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 1 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text} is outside 1..86400 seconds")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "healthcheck", help="diagnose this GPU node with DCGM, NVML and the kernel log; report the verdict",
        description="Runs dcgmi diag and dcgmi health, reads NVML counters and driver messages from the kernel "
        "log, decides healthy / application_fault / hardware_fault / misconfigured / inconclusive, prints the "
        "HealthCheckReported event as JSON and writes it to the Kinesis stream. With --watch it keeps running "
        "and reports GpuHealthSignal events when something on the node degrades.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.__class__ = _OneLineParser
    parser.add_argument("--level", type=int, choices=(1, 2, 3, 4),
                        help="dcgmi diag level (GPU_RECOVERY_CHECK_LEVEL; default 2)")
    parser.add_argument("--dcgmi", help="the dcgmi binary to run (GPU_RECOVERY_DCGMI; default: dcgmi on PATH)")
    parser.add_argument("--kernel-log", help="read driver messages from this file instead of dmesg/journal")
    parser.add_argument("--since", help="fault time, ISO 8601: ignore older kernel messages (GPU_RECOVERY_SINCE)")
    parser.add_argument("--expected-gpus", type=int, help="GPUs this node should have")
    parser.add_argument("--node-arn", help="container instance ARN (GPU_RECOVERY_NODE_ARN)")
    parser.add_argument("--instance-id", help="EC2 instance id (GPU_RECOVERY_INSTANCE_ID)")
    parser.add_argument("--incident-id", help="incident this check belongs to (GPU_RECOVERY_INCIDENT_ID)")
    parser.add_argument("--check-task-arn", help="this task's ARN (default: from the ECS task metadata)")
    parser.add_argument("--check-key", help="the check attempt this report answers (GPU_RECOVERY_CHECK_KEY)")
    parser.add_argument("--diag-timeout", type=float, help="seconds before dcgmi diag counts as hung")
    parser.add_argument("--health-sample", type=float, help="seconds to let health watches sample (10)")
    parser.add_argument("--no-health", action="store_true", default=None, help="skip dcgmi health")
    parser.add_argument("--stdout-only", action="store_true", default=None,
                        help="print the event, write nothing to the stream")
    parser.add_argument("--put-attempts", type=int, help="tries to put the event before giving up (5)")
    parser.add_argument("--watch", action="store_true",
                        help="run as the node watcher: listen for XIDs, poll dcgmi health; until SIGTERM")
    parser.add_argument("--interval-s", type=_seconds,
                        help="--watch: seconds between dcgmi health polls (GPU_RECOVERY_WATCH_INTERVAL_S; 300)")
    add_aws_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from healthcheck.config import load_config
    from healthcheck.host import boot_time
    from healthcheck.identity import resolve

    config = load_config(
        level=args.level, dcgmi=args.dcgmi, kernel_log=args.kernel_log, since=args.since,
        expected_gpus=args.expected_gpus, node_arn=args.node_arn, instance_id=args.instance_id,
        incident_id=args.incident_id, check_task_arn=args.check_task_arn, check_key=args.check_key,
        diag_timeout_s=args.diag_timeout, health_sample_s=args.health_sample, skip_health=args.no_health,
        stdout_only=args.stdout_only, put_attempts=args.put_attempts, watch_interval_s=args.interval_s,
    )
    secret = config.check_secret.get_secret_value() if config.check_secret else None
    identity = resolve(node_arn=config.node_arn, instance_id=config.instance_id,
                       check_task_arn=None if args.watch else config.check_task_arn,
                       incident_id=config.incident_id, environ=os.environ, check_key=config.check_key,
                       secret=secret, boot_time=boot_time())
    writer = None if config.stdout_only else _writer_factory(args)
    if args.watch:
        return _watch(config, identity, writer)
    return _check(config, identity, writer)


def _check(config: Any, identity: Any, writer: Any) -> int:
    import time
    from datetime import UTC, datetime

    from healthcheck.agent import Probes, run_check
    from healthcheck.nvml import PynvmlApi
    from healthcheck.process import SubprocessRunner

    probes = Probes(runner=SubprocessRunner(grace_s=config.kill_grace_s), nvml=PynvmlApi(), sleep=time.sleep,
                    now=lambda: datetime.now(UTC), monotonic=time.monotonic, local_tz=_local_zone())
    return run_check(config, probes, identity, writer=writer, out=sys.stdout).exit_code


def _watch(config: Any, identity: Any, writer: Any) -> int:
    import signal
    import threading
    import time
    from datetime import UTC, datetime

    from healthcheck.nvml import PynvmlApi
    from healthcheck.process import SubprocessRunner
    from healthcheck.watch import WatchProbes, run_watch

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    probes = WatchProbes(runner=SubprocessRunner(grace_s=config.kill_grace_s), nvml=PynvmlApi(),
                         xids=_xid_source, monotonic=time.monotonic, now=lambda: datetime.now(UTC))
    return run_watch(config, probes, identity, stop=stop, writer=writer, out=sys.stdout)


def _xid_source() -> Any:
    from healthcheck.nvml_events import PynvmlXidSource

    return PynvmlXidSource()


def _local_zone() -> Any:
    from datetime import datetime

    return datetime.now().astimezone().tzinfo


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
