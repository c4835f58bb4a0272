"""The MultiLangDaemon as a process: started in its own process group, stopped with its processors.

The daemon (Java, from amazon-kclpy) takes the shard leases (DynamoDB), reads Kinesis, and runs the
configured executable once per shard, talking to it over stdin/stdout (the amazon-kclpy protocol).
Its configuration is ``kcl_config``, its properties file ``kcl_properties``, its command line
``kcl_java``; priming a local lease table is ``kcl_leases``. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from consumers.runtime.kcl_java import daemon_command


def launch_daemon(
    properties_path: Path,
    *,
    env: Mapping[str, str],
    log_path: Path,
    java: str = "java",
    jvm_args: Iterable[str] = (),
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start the daemon in its own process group, stdout+stderr appended to ``log_path``.

    The record processors it spawns inherit ``env`` and the process group; stop everything
    with ``stop_daemon``.
    """
    command = daemon_command(properties_path, java, jvm_args=jvm_args)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def stop_daemon(process: subprocess.Popen[bytes], *, grace_seconds: float = 10.0) -> int | None:
    """SIGTERM the JVM (its hook checkpoints and shuts processors down), then kill the group.

    Returns the JVM's exit code (None if it had to be killed and did not report one).
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # Record processors left behind (same process group) go too.
    _signal_group(process.pid, signal.SIGKILL)
    return process.returncode
