"""Run kinesis-mock (npm package ``kinesis-local``) as a local Kinesis for tests.

Why kinesis-mock and not moto: the KCL's Kinesis client speaks HTTP/2 only, and moto's
server answers HTTP/1.1 (the KCL fails with "First received frame was not SETTINGS").
kinesis-mock's plain port speaks h2c (HTTP/2 without TLS) *and* HTTP/1.1, so both the
KCL and boto3 can use the same endpoint.

kinesis-mock is configured through environment variables only (see the package README):
``KINESIS_MOCK_PLAIN_PORT``, ``KINESIS_MOCK_TLS_PORT``, ``AWS_REGION``, ``AWS_ACCOUNT_ID``,
``INITIALIZE_STREAMS``, ``SHOULD_PERSIST_DATA``, ``LOAD_DATA_IF_EXISTS``, ``LOG_LEVEL``.
The package's own ``server.json`` is not a config file: it is the self-signed TLS key and
certificate for the TLS port, read from ``KINESIS_MOCK_CERT_PATH`` (default: ``server.json``
in the working directory). We start it from the package folder and also pass the absolute
path, so it is found whatever the working directory.

Install it with ``bash .ci/install-kcl.sh`` (into ``.local/node``, an ignored folder).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

PACKAGE_NAME = "kinesis-local"
KINESIS_LOCAL_VERSION = "0.6.2"
INSTALL_HINT = (
    f"run `bash .ci/install-kcl.sh` (npm install --prefix .local/node {PACKAGE_NAME}@{KINESIS_LOCAL_VERSION})"
)


class KinesisLocalError(RuntimeError):
    """kinesis-local is missing, failed to start, or did not become ready."""


def repo_root() -> Path:
    """The repository root (this file lives in ``<root>/local/``)."""
    return Path(__file__).resolve().parent.parent


def default_node_prefix() -> Path:
    """Where ``.ci/install-kcl.sh`` installs node packages (overridable by env at call time)."""
    override = os.environ.get("GPU_RECOVERY_NODE_PREFIX")
    return Path(override) if override else repo_root() / ".local" / "node"


def package_dir(node_prefix: Path | None = None) -> Path:
    """The installed ``kinesis-local`` package folder; raises with an install hint if absent."""
    prefix = node_prefix if node_prefix is not None else default_node_prefix()
    folder = prefix / "node_modules" / PACKAGE_NAME
    if not (folder / "main.js").is_file():
        raise KinesisLocalError(f"{PACKAGE_NAME} is not installed under {prefix}: {INSTALL_HINT}")
    return folder


def node_executable() -> str:
    """Absolute path of ``node``; raises with a clear message if Node.js is missing."""
    from shutil import which

    found = which("node")
    if found is None:
        raise KinesisLocalError("`node` was not found on PATH: install Node.js 20 (apt-get install nodejs)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual small race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def initialize_streams_value(streams: Mapping[str, int], region: str) -> str:
    """``INITIALIZE_STREAMS`` syntax: ``name:shards:region`` joined by commas."""
    return ",".join(f"{name}:{shards}:{region}" for name, shards in streams.items())


def server_env(
    *,
    plain_port: int,
    tls_port: int,
    region: str,
    account_id: str,
    cert_path: Path,
    initialize_streams: Mapping[str, int],
    log_level: str,
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for the kinesis-mock process (persistence off, fast stream ops)."""
    env = dict(os.environ if base_env is None else base_env)
    env.update(
        {
            "KINESIS_MOCK_PLAIN_PORT": str(plain_port),
            "KINESIS_MOCK_TLS_PORT": str(tls_port),
            "KINESIS_MOCK_CERT_PATH": str(cert_path),
            "AWS_REGION": region,
            "AWS_ACCOUNT_ID": account_id,
            "SHOULD_PERSIST_DATA": "false",
            "LOAD_DATA_IF_EXISTS": "false",
            "LOG_LEVEL": log_level,
            "ROOT_LOG_LEVEL": "ERROR",
            "CREATE_STREAM_DURATION": "100ms",
            "DELETE_STREAM_DURATION": "100ms",
        }
    )
    if initialize_streams:
        env["INITIALIZE_STREAMS"] = initialize_streams_value(initialize_streams, region)
    else:
        env.pop("INITIALIZE_STREAMS", None)
    return env


def is_ready(endpoint: str, timeout: float = 1.0, path: str = "/healthcheck") -> bool:
    """True when the server answers ``path`` (kinesis-mock's ``/healthcheck``) with 200."""
    try:
        with urllib.request.urlopen(f"{endpoint}{path}", timeout=timeout) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group started with ``start_new_session``; SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10.0)


def _log_tail(path: Path | None, limit: int = 2000) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return path.read_text(errors="replace")[-limit:]


@dataclass
class KinesisLocal:
    """Context manager running kinesis-mock on free 127.0.0.1 ports.

    ``endpoint`` (plain port) serves HTTP/2 cleartext (the KCL) and HTTP/1.1 (boto3).
    kinesis-mock binds all interfaces; it has no host setting. Use it on test machines only.
    """

    region: str = "us-east-1"
    account_id: str = "000000000000"
    initialize_streams: Mapping[str, int] = field(default_factory=dict)
    log_path: Path | None = None
    log_level: str = "WARN"
    startup_timeout: float = 60.0
    node_prefix: Path | None = None
    extra_node_args: Sequence[str] = ("--max-old-space-size=256",)
    plain_port: int = 0
    tls_port: int = 0
    stop_timeout: float = 2.0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log_file: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<plain port>``; valid once started."""
        if self._process is None:
            raise KinesisLocalError("kinesis-local is not running")
        return f"http://127.0.0.1:{self.plain_port}"

    def start(self) -> str:
        """Start kinesis-mock and wait until it answers; returns the endpoint URL."""
        if self._process is not None:
            return self.endpoint
        folder = package_dir(self.node_prefix)
        self.plain_port = self.plain_port or free_port()
        self.tls_port = self.tls_port or free_port()
        env = server_env(
            plain_port=self.plain_port,
            tls_port=self.tls_port,
            region=self.region,
            account_id=self.account_id,
            cert_path=folder / "server.json",
            initialize_streams=self.initialize_streams,
            log_level=self.log_level,
        )
        self._log_file = open(self.log_path, "wb") if self.log_path else None  # noqa: SIM115
        output: IO[bytes] | int = self._log_file if self._log_file is not None else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [node_executable(), *self.extra_node_args, str(folder / "main.js")],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        return self.endpoint

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        endpoint = f"http://127.0.0.1:{self.plain_port}"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise KinesisLocalError(f"kinesis-local exited with {code}: {_log_tail(self.log_path)}")
            if is_ready(endpoint):
                return
            time.sleep(0.2)
        self.stop()
        raise KinesisLocalError(
            f"kinesis-local did not answer on {endpoint} within {self.startup_timeout}s: "
            f"{_log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Stop the process group; safe to call twice.

        kinesis-mock waits for open keep-alive connections (e.g. a live boto3 client) after
        SIGTERM, so it gets ``stop_timeout`` seconds, then SIGKILL (nothing is persisted).
        """
        if self._process is not None:
            stop_process_group(self._process, timeout=self.stop_timeout)
            self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
