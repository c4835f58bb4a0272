"""The whole local stack for the KCL daemon: moto + kinesis-local, provisioned, and its workers.

moto's server (its own process, one request at a time) serves DynamoDB, SNS, ECS, EC2...
kinesis-local (kinesis-mock, a Node process) serves Kinesis, because the KCL daemon's Kinesis client
speaks HTTP/2 only and moto does not. The Python side uses kinesis-local too
(``GPU_RECOVERY_KINESIS_ENDPOINT_URL``), so there is one stream.

    with LocalStack(load_settings(), Path("/tmp/stack")) as stack:
        stack.settings   # endpoints filled in
        stack.env()      # the environment for `gpu-recovery consume ...` and any client
        stack.start_worker("projector", worker_id="projector-1")
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import Settings
from local.embedded_aws import EmbeddedAws, free_port
from local.kinesis_local import KinesisLocal, is_ready, stop_process_group
from local.provision import Provisioned, provision

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def stack_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment that points the CLI, the daemon and its processors at the local stack."""
    env = dict(os.environ if base is None else base)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    env.update(LOCAL_CREDENTIALS)
    env.update({
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
        "GPU_RECOVERY_REGION": settings.region,
        "GPU_RECOVERY_STREAM_NAME": settings.stream_name,
        "GPU_RECOVERY_STREAM_SHARDS": str(settings.stream_shards),
        "GPU_RECOVERY_ACCOUNT_ID": settings.account_id,
        "ECS_CLUSTER_NAME": settings.cluster_name,
    })
    if settings.endpoint_url:
        env["GPU_RECOVERY_ENDPOINT_URL"] = settings.endpoint_url
    if settings.kinesis_endpoint_url:
        env["GPU_RECOVERY_KINESIS_ENDPOINT_URL"] = settings.kinesis_endpoint_url
    return env


def worker_command(
    consumer: str, *, worker_id: str, properties_out: Path, python: str = sys.executable,
    extra: Sequence[str] = (),
) -> list[str]:
    """``gpu-recovery consume <consumer> --engine kcl`` with the local timings and a lean JVM."""
    return [
        python, "-m", "gpu_recovery.cli", "consume", consumer, "--engine", "kcl", "--timings", "local",
        "--prime-leases", "--lean-jvm", "--worker-id", worker_id, "--properties-out", str(properties_out),
        *extra,
    ]


@dataclass
class Worker:
    """One ``gpu-recovery consume`` process: the CLI, its JVM and its processors share a process group."""

    consumer: str
    worker_id: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pgid(self) -> int:
        return self.process.pid


@dataclass
class MotoProcess:
    """moto's server in a process of its own, one request at a time (``local.moto_server``): atomic
    conditional writes, and no interpreter lock shared with the caller."""

    log_path: Path
    startup_timeout: float = 60.0
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoProcess:
        self.port = self.port or free_port()
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}: {tail(self.log_path)}")
            if is_ready(self.endpoint_url, path="/moto-api/"):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint_url}: {tail(self.log_path)}")

    def stop(self) -> None:
        if self._process is not None:
            stop_process_group(self._process, timeout=5.0)
            self._process = None


@dataclass
class LocalStack:
    """Both servers, provisioned. moto runs in a process of its own that serves one request at a time, so
    that concurrent workers' conditional writes stay atomic; ``moto_in_process=True`` uses the embedded
    (threaded, in-process) server instead, fine for one writer."""

    settings: Settings
    work_dir: Path
    moto_in_process: bool = False
    # kinesis-mock keeps every record in its heap: 20,000 records of 1 KB need more than 256 MB.
    kinesis_node_args: tuple[str, ...] = ("--max-old-space-size=1024",)
    workers: list[Worker] = field(default_factory=list)
    provisioned: Provisioned | None = None
    _aws: EmbeddedAws | MotoProcess | None = field(default=None, init=False, repr=False)
    _kinesis: KinesisLocal | None = field(default=None, init=False, repr=False)

    def start(self) -> Settings:
        """Start both servers, create the stream, tables, topic and cluster; returns the local settings."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.moto_in_process:
                self._aws = EmbeddedAws().start()
            else:
                self._aws = MotoProcess(self.work_dir / "moto.log").start()
            self._kinesis = KinesisLocal(
                region=self.settings.region, account_id=self.settings.account_id,
                log_path=self.work_dir / "kinesis-local.log", extra_node_args=self.kinesis_node_args,
            )
            kinesis_endpoint = self._kinesis.start()
            self.settings = self.settings.model_copy(
                update={"endpoint_url": self._aws.endpoint_url, "kinesis_endpoint_url": kinesis_endpoint}
            )
            self.provisioned = provision(AwsClients(self.settings))
        except BaseException:
            self.stop()
            raise
        return self.settings

    def env(self) -> dict[str, str]:
        return stack_env(self.settings)

    def clients(self) -> AwsClients:
        return AwsClients(self.settings)

    def start_worker(self, consumer: str, *, worker_id: str, extra: Sequence[str] = (), nice: int = 0) -> Worker:
        """Launch a KCL worker in its own process group, its output in ``<work_dir>/<worker_id>.log``.

        ``nice`` > 0 lowers the worker's CPU priority (its JVM and processors inherit it): on a small
        machine the local stand-ins for AWS then answer first, as the real services would.
        """
        log_path = self.work_dir / f"{worker_id}.log"
        command = worker_command(
            consumer, worker_id=worker_id, properties_out=self.work_dir / f"{worker_id}.properties", extra=extra
        )
        if nice:
            command = ["nice", "-n", str(nice), *command]
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                command, env=self.env(), stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        worker = Worker(consumer, worker_id, process, log_path)
        self.workers.append(worker)
        return worker

    def stop_worker(self, worker: Worker, *, grace_seconds: float = 10.0) -> None:
        """SIGTERM the CLI (it forwards to the daemon, which checkpoints and exits), then kill the group.

        Only the CLI gets SIGTERM: signalling the group would kill the processors before the daemon
        asks them for a final checkpoint.
        """
        if worker.process.poll() is None:
            worker.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=grace_seconds)
        kill_group(worker.pgid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=10)

    def stop(self) -> None:
        for worker in self.workers:
            self.stop_worker(worker)
        self.workers.clear()
        if self._kinesis is not None:
            self._kinesis.stop()
            self._kinesis = None
        if self._aws is not None:
            self._aws.stop()
            self._aws = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def kill_group(pgid: int) -> None:
    """SIGKILL a process group (a crashed worker: no shutdown hook, no checkpoint)."""
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def tail(path: Path, limit: int = 3000) -> str:
    if not path.exists():
        return "(no log)"
    return path.read_text(errors="replace")[-limit:]


def print_env(env: Mapping[str, str], out: IO[str], names: Sequence[str]) -> None:
    for name in names:
        if name in env:
            print(f"export {name}={env[name]}", file=out)
