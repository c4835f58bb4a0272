"""``gpu-recovery local-stack``: the whole local stack with the KCL daemons, in one command."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gpu_recovery.commands.common import number, progress

EXPORTED = (
    "GPU_RECOVERY_ENDPOINT_URL", "GPU_RECOVERY_KINESIS_ENDPOINT_URL", "GPU_RECOVERY_REGION",
    "GPU_RECOVERY_STREAM_NAME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "local-stack", help="start moto + kinesis-local + the KCL consumer workers until Ctrl-C",
        description="Starts moto's server (DynamoDB, SNS, ECS...) and kinesis-local (an HTTP/2 Kinesis the "
        "KCL daemon can use) on 127.0.0.1, creates the stream, tables, topic and cluster, launches one "
        "KCL worker per consumer (gpu-recovery consume <consumer> --engine kcl) and prints the endpoint "
        "settings as shell exports. Needs `bash .ci/install-kcl.sh` (Node.js, kinesis-local, Java 17).",
    )
    parser.add_argument("--consumers", type=consumer_list, default=["projector", "recovery"],
                        help="comma-separated consumers to run under the daemon, or 'none' (default: both)")
    parser.add_argument("--shards", type=number(1, 500, integer=True),
                        help="stream shards (or GPU_RECOVERY_STREAM_SHARDS; default 4)")
    parser.add_argument("--work-dir", type=Path, help="logs and properties (default: a temporary folder)")
    parser.set_defaults(handler=run)


def consumer_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ("projector", "recovery", "none")]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give projector, recovery (comma-separated) or none")
    return [name for name in names if name != "none"]


def check_prerequisites() -> None:
    """kinesis-local (and Node.js) before anything starts, rather than after moto is up."""
    from consumers.core.errors import ConfigError
    from local.kinesis_local import KinesisLocalError, node_executable, package_dir

    try:
        package_dir()
        node_executable()
    except KinesisLocalError as exc:
        raise ConfigError(f"local-stack needs kinesis-local: {exc} (or use 'gpu-recovery demo', which needs "
                          "neither)") from None


def run(args: argparse.Namespace) -> int:
    import tempfile

    from gpu_recovery.settings import load_settings
    from local.stack import LocalStack, print_env, tail

    say = progress(quiet=True)
    consumers = args.consumers
    settings = load_settings(stream_shards=args.shards)
    check_prerequisites()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu-recovery-local-"))
    work_dir.mkdir(parents=True, exist_ok=True)  # a file in the way fails here, before any server starts
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with LocalStack(settings, work_dir) as stack:
            say(f"moto on {stack.settings.endpoint_url}, kinesis-local on {stack.settings.kinesis_endpoint_url}, "
                f"stream {stack.settings.stream_name} ({stack.settings.stream_shards} shards); logs in {work_dir}")
            workers = [stack.start_worker(c, worker_id=f"{c}-local-1") for c in consumers]
            for worker in workers:
                say(f"started {worker.consumer} worker {worker.worker_id} (log {worker.log_path})")
            print_env(stack.env(), sys.stdout, EXPORTED)
            sys.stdout.flush()
            say("ready; Ctrl-C stops everything")
            while not stop.wait(1.0):
                for worker in workers:
                    if worker.process.poll() is not None:
                        say(f"worker {worker.worker_id} exited with {worker.process.returncode}:\n"
                            f"{tail(worker.log_path)}")
                        return 1
            say("stopping workers and servers")
            started = time.monotonic()
        say(f"stopped in {time.monotonic() - started:.1f}s")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
