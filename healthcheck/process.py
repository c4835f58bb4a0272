"""Run a command with a deadline; a hang, a crash and a missing binary come back as data, never as a raise."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None  # None when it never ran or was killed for the deadline
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    not_found: str | None = None  # why it could not be started (missing, not executable)

    @property
    def ran(self) -> bool:
        return self.not_found is None and not self.timed_out

    def describe(self) -> str:
        """One line for a reason: what happened, with the tail of stderr."""
        name = " ".join(self.argv[:3])
        if self.not_found is not None:
            return f"{name}: could not start ({self.not_found})"
        if self.timed_out:
            return f"{name}: no answer within {self.duration_s:.0f}s (killed)"
        tail = self.stderr.strip().splitlines()[-1:] or self.stdout.strip().splitlines()[-1:]
        shown = f": {tail[0][:200]}" if tail else ""
        if self.returncode is not None and self.returncode < 0:
            return f"{name}: killed by signal {-self.returncode}{shown}"
        return f"{name}: exit {self.returncode}{shown}"


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout_s: float) -> CommandResult: ...


class SubprocessRunner:
    """Runs in its own process group so that a timeout can stop dcgmi and whatever it spawned.

    dcgmi catches SIGTERM and aborts the running diagnostic on the host engine, so a timeout sends SIGTERM
    first and SIGKILL only after ``grace_s``.
    """

    def __init__(self, *, grace_s: float = 10.0, env: dict[str, str] | None = None) -> None:
        self._grace_s = grace_s
        self._env = env

    def __call__(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        args = tuple(argv)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                text=True, errors="replace", start_new_session=True, env=self._env,
            )
        except OSError as exc:  # FileNotFoundError, PermissionError, exec format error
            return CommandResult(args, None, "", "", 0.0, not_found=f"{type(exc).__name__}: {exc.strerror}")
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            out, err = self._stop(proc)
            return CommandResult(args, None, out, err, time.monotonic() - started, timed_out=True)
        return CommandResult(args, proc.returncode, out, err, time.monotonic() - started)

    def _stop(self, proc: subprocess.Popen[str]) -> tuple[str, str]:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            return proc.communicate(timeout=self._grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            return proc.communicate()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own in the meantime
        os.killpg(pid, sig)
