"""``gpu-recovery consume projector|recovery``: run one consumer worker.

``--engine kcl`` (production) writes the KCL MultiLangDaemon's properties and runs the daemon, which
takes shard leases in DynamoDB and runs ``python -m gpu_recovery.kcl_worker <consumer>`` per shard.
Start N of these (N tasks of an ECS service) to spread the shards over N workers.
``--engine local`` runs the in-process shard reader instead (no Java; one worker; checkpoints in the
``gpu_recovery_checkpoints`` table). Both drive the same ``ShardProcessor``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumers.core.errors import ConfigError
from gpu_recovery.commands.common import add_aws_options, key_value, log_level, number, settings_from

if TYPE_CHECKING:
    from consumers.runtime.kcl_config import DaemonConfig
    from gpu_recovery.settings import Settings

CONSUMERS = ("projector", "recovery")
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Fake credentials for a local endpoint when none are set; never real ones.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "consume", help="run a consumer worker (projector or recovery) under the KCL daemon or locally",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("consumer", choices=CONSUMERS)
    parser.add_argument("--engine", choices=("kcl", "local"), default="kcl",
                        help="kcl: the KCL MultiLangDaemon (Java, leases in DynamoDB); local: in-process reader")
    add_aws_options(parser)
    parser.add_argument("--kinesis-endpoint-url",
                        help="Kinesis endpoint if it differs (or GPU_RECOVERY_KINESIS_ENDPOINT_URL)")
    kcl = parser.add_argument_group("KCL daemon (--engine kcl)")
    kcl.add_argument("--worker-id", "--workers-id", dest="worker_id",
                     help="this worker's id in the lease table (default: a random UUID)")
    kcl.add_argument("--properties-out", type=Path,
                     help="where to write the daemon's properties (default: a temporary folder)")
    kcl.add_argument("--properties-only", action="store_true", help="write the properties and exit")
    kcl.add_argument("--initial-position", choices=("TRIM_HORIZON", "LATEST"), default="TRIM_HORIZON",
                     help="where a new lease starts reading (default: TRIM_HORIZON)")
    kcl.add_argument("--retrieval-mode", choices=("POLLING", "FANOUT"), default="POLLING",
                     help="POLLING (shared 2 MB/s per shard) or FANOUT (enhanced fan-out, own 2 MB/s)")
    kcl.add_argument("--metrics-level", choices=("NONE", "SUMMARY", "DETAILED"), default="NONE",
                     help="KCL CloudWatch metrics (needs cloudwatch:PutMetricData unless NONE)")
    kcl.add_argument("--timings", choices=("production", "local"), default="production",
                     help="local: short lease/sync intervals for a local stack and tests")
    kcl.add_argument("--prime-leases", action="store_true",
                     help="write missing shard leases before start (skips the KCL's random 1-30 s wait)")
    kcl.add_argument("--lean-jvm", action="store_true", help="small heap, serial GC (tests, small tasks)")
    kcl.add_argument("--property", action="append", default=[], metavar="KEY=VALUE", type=key_value,
                     help="any other daemon property, or an override (repeatable), e.g. maxLeasesForWorker=8")
    kcl.add_argument("--java", default="java", help="java executable (default: java on PATH)")
    kcl.add_argument("--processor-log-level", type=log_level, default="INFO",
                     help="log level of the per-shard processors (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    local = parser.add_argument_group("in-process reader (--engine local)")
    local.add_argument("--poll-interval", type=number(0, 3600), default=1.0, help="seconds between idle polls")
    local.add_argument("--until-idle", action="store_true",
                       help="drain every shard to its tip, then exit: 0, or 1 if a shard had to stop "
                       "(catch-up after an outage, tests)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, kinesis_endpoint_url=args.kinesis_endpoint_url)
    if args.engine == "local":
        return run_local(settings, args.consumer, poll_interval=args.poll_interval, until_idle=args.until_idle)
    if args.until_idle:
        raise ConfigError("--until-idle works with --engine local only (add --engine local)")
    return run_kcl(settings, args)


# --- the KCL daemon -------------------------------------------------------------------------------


def application_name(consumer: str) -> str:
    from gpu_recovery.wiring import PROJECTOR_APP, RECOVERY_APP

    return PROJECTOR_APP if consumer == "projector" else RECOVERY_APP


def processor_argv(consumer: str, log_level: str = "INFO", python: str = sys.executable) -> list[str]:
    return [python, "-m", "gpu_recovery.kcl_worker", consumer, "--log-level", log_level]


def daemon_config(settings: Settings, args: argparse.Namespace) -> DaemonConfig:
    """The daemon's configuration from settings (stream, region, endpoints) and the command's options."""
    from consumers.runtime.kcl_config import DaemonConfig
    from consumers.runtime.kcl_properties import executable_command

    local = bool(settings.endpoint_url or settings.kinesis_endpoint_url)
    values: dict[str, Any] = {
        "stream_name": settings.stream_name,
        "application_name": application_name(args.consumer),
        "executable": executable_command(processor_argv(args.consumer, args.processor_log_level)),
        "region": settings.region,
        "initial_position": args.initial_position,
        "retrieval_mode": args.retrieval_mode,
        "metrics_level": args.metrics_level,
        "worker_id": args.worker_id,
        # Recovery notices deadlines on empty batches, so it must get them while the stream is quiet.
        "call_process_records_even_for_empty_record_list": args.consumer == "recovery",
        "extra_properties": parse_properties(args.property),
    }
    if local:
        values["credentials_provider"] = "EnvironmentVariableCredentialsProvider"
    kinesis = settings.kinesis_endpoint_url or settings.endpoint_url
    if args.timings == "local":
        return DaemonConfig.for_local_tests(
            kinesis_endpoint=kinesis or "", dynamodb_endpoint=settings.endpoint_url or "", **values
        )
    return DaemonConfig(kinesis_endpoint=kinesis, dynamodb_endpoint=settings.endpoint_url, **values)


def parse_properties(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` options -> a mapping; a pair without ``=`` is a usage error."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--property wants KEY=VALUE, got {pair!r} (e.g. --property maxLeasesForWorker=8)")
        parsed[key.strip()] = value.strip()
    return parsed


def daemon_env(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The daemon's (and so its processors') environment: what this command resolved, made explicit."""
    env = dict(base)
    env.update({"GPU_RECOVERY_REGION": settings.region, "GPU_RECOVERY_STREAM_NAME": settings.stream_name})
    if settings.endpoint_url:
        env["GPU_RECOVERY_ENDPOINT_URL"] = settings.endpoint_url
    if settings.kinesis_endpoint_url:
        env["GPU_RECOVERY_KINESIS_ENDPOINT_URL"] = settings.kinesis_endpoint_url
    local = bool(settings.endpoint_url or settings.kinesis_endpoint_url)
    if local and not env.get("AWS_ACCESS_KEY_ID"):
        env.update(LOCAL_CREDENTIALS)
        env.pop("AWS_SESSION_TOKEN", None)
    env.setdefault("AWS_REGION", settings.region)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_kcl(settings: Settings, args: argparse.Namespace) -> int:
    from consumers.runtime import kcl_java, kcl_leases
    from consumers.runtime.kcl_properties import write_properties

    config = daemon_config(settings, args)
    target = args.properties_out or Path(tempfile.mkdtemp(prefix="gpu-recovery-kcl-")) / f"{args.consumer}.properties"
    properties = write_properties(config, target)
    print(f"gpu-recovery consume: KCL properties in {properties}", file=sys.stderr, flush=True)
    if args.properties_only:
        return 0
    jvm_args = kcl_java.LEAN_JVM_ARGS if args.lean_jvm else ()
    try:  # java and the KCL jars first: nothing is touched in AWS when the daemon cannot run
        command = kcl_java.daemon_command(properties, args.java, jvm_args=jvm_args)
    except kcl_java.KclSetupError as exc:
        raise ConfigError(f"{exc} (or run --engine local, which needs no Java)") from None
    if args.prime_leases:
        from gpu_recovery.aws import AwsClients

        clients = AwsClients(settings)
        kcl_leases.prime_lease_table(config, dynamodb=clients.client("dynamodb"), kinesis=clients.client("kinesis"))
    jvm_args = kcl_java.LEAN_JVM_ARGS if args.lean_jvm else ()
    command = kcl_java.daemon_command(properties, args.java, jvm_args=jvm_args)
    return run_forwarding_signals(command, daemon_env(settings, os.environ))


def run_forwarding_signals(command: list[str], env: Mapping[str, str]) -> int:
    """Run ``command`` in our process group, pass SIGTERM/SIGINT/SIGHUP on, return its exit status.

    On SIGTERM (ECS stopping the task) the daemon asks each processor to checkpoint, then exits.
    """
    process = subprocess.Popen(command, env=dict(env), stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: object) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code


# --- the in-process reader ------------------------------------------------------------------------


def run_local(settings: Settings, consumer: str, *, poll_interval: float, until_idle: bool = False) -> int:
    """Poll every shard until SIGINT/SIGTERM (or, ``until_idle``, until every shard is read to its tip);
    checkpoints survive a restart. 1 when a shard had to stop (a record could not be handled or parked)."""
    from consumers.runtime.processor import FatalProcessorError
    from gpu_recovery.aws import AwsClients
    from gpu_recovery.kcl_worker import build_handler
    from gpu_recovery.wiring import local_reader

    clients = AwsClients(settings)
    batch_handler = build_handler(consumer, clients, owner="local")
    reader = local_reader(clients, application_name(consumer), batch_handler)
    # The recovery notices expired deadlines while the stream is quiet (the daemon's empty batches).
    on_idle = getattr(batch_handler, "on_idle", None) or (lambda: None)
    try:
        if until_idle:
            delivered = reader.run_until_idle()
            on_idle()
            delivered += reader.run_until_idle()  # what noticing the deadlines appended
            print(f"gpu-recovery consume: {consumer}: {delivered} records read, every shard at its tip",
                  file=sys.stderr)
        else:
            _poll_until_signal(reader, on_idle, poll_interval)
    except FatalProcessorError as exc:
        print(f"gpu-recovery consume: {consumer}: a shard had to stop: {exc} (its records stay unread after the "
              "last checkpoint; fix the cause and run again)", file=sys.stderr)
        return 1
    finally:
        reader.shutdown()
    return 0


def _poll_until_signal(reader: Any, on_idle: Any, poll_interval: float) -> None:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.is_set():
            if reader.poll() == 0:
                on_idle()
                stop.wait(poll_interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
