"""A user's mistake on the command line is one line ``gpu-recovery: error: <what> (<how to fix>)`` and exit 2,
never a traceback: a table of bad invocations across every command.

Each runs in this process (``main([...])``) so the table stays fast; nothing in it may start a server or wait
on the network: an unreachable endpoint is refused at once (nothing listens on 127.0.0.1:9, the discard
port), a missing kinesis-local or java before anything starts.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gpu_recovery.cli import COMMANDS, main

UNREACHABLE = "http://127.0.0.1:9"
ERROR_LINE = re.compile(r"^gpu-recovery: error: \S.* \(.+\)$")


@dataclass(frozen=True)
class Bad:
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def resolved(self, files: dict[str, str]) -> list[str]:
        return [part.format(**files) for part in self.argv]


def bad(*argv: str, **env: str) -> Bad:
    return Bad(argv, env)


def _files(tmp: Path) -> dict[str, str]:
    """Inputs for the table: each one wrong in its own way."""
    history = gzip.compress(b'{"detail-type": "ECS Task State Change"}\n' * 2000)
    (tmp / "truncated.gz").write_bytes(history[: len(history) // 2])
    (tmp / "garbage.gz").write_bytes(b"\x1f\x8b" + b"not deflate at all" * 10)
    (tmp / "a-file").write_text("I am a file\n")
    (tmp / "a-dir").mkdir()
    (tmp / "bad.yaml").write_text("fleet: {nodes: [1, 2\njobs: ]]]\n")
    (tmp / "wrong.yaml").write_text("fleet: 3\njobs: nope\n")
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    (tmp / "events.jsonl").write_text("")
    return {"tmp": str(tmp), "file": str(tmp / "a-file"), "dir": str(tmp / "a-dir"),
            "truncated": str(tmp / "truncated.gz"), "garbage": str(tmp / "garbage.gz"),
            "bad_yaml": str(tmp / "bad.yaml"), "wrong_yaml": str(tmp / "wrong.yaml"),
            "binary_yaml": str(tmp / "binary.yaml"), "empty": str(tmp / "events.jsonl"),
            "unreachable": UNREACHABLE}


AGED = "99999999999d"
TABLE: dict[str, Bad] = {
    # --- the program itself --------------------------------------------------------------------
    "no command": bad(),
    "unknown command": bad("frobnicate"),
    "log level BOGUS": bad("--log-level", "BOGUS", "schema", "export", "{tmp}/schemas"),
    "log level empty": bad("--log-level", "", "schema", "export", "{tmp}/schemas"),
    # --- schema --------------------------------------------------------------------------------
    "schema without action": bad("schema"),
    "schema export without folder": bad("schema", "export"),
    "schema export onto a file": bad("schema", "export", "{file}"),
    "schema export under a file": bad("schema", "export", "{file}/inside"),
    # --- demo ----------------------------------------------------------------------------------
    "demo unknown scenario": bad("demo", "--scenario", "no-such-scenario-at-all"),
    "demo scenario is bad YAML": bad("demo", "--scenario", "{bad_yaml}"),
    "demo scenario of the wrong shape": bad("demo", "--scenario", "{wrong_yaml}"),
    "demo scenario is binary": bad("demo", "--scenario", "{binary_yaml}"),
    "demo scenario is a folder": bad("demo", "--scenario", "{dir}"),
    "demo malformed endpoint": bad("demo", "--endpoint-url", "not-a-url"),
    "demo endpoint without host": bad("demo", "--endpoint-url", "http://"),
    "demo unreachable endpoint": bad("demo", "--endpoint-url", "{unreachable}"),
    "demo bad shards setting": bad("demo", "--json", GPU_RECOVERY_STREAM_SHARDS="zero"),
    "demo unknown option": bad("demo", "--colour"),
    # --- consume -------------------------------------------------------------------------------
    "consume without consumer": bad("consume"),
    "consume unknown consumer": bad("consume", "janitor"),
    "consume unknown engine": bad("consume", "projector", "--engine", "spark"),
    "consume missing java": bad("consume", "projector", "--java", "/nonexistent/java", "--properties-out",
                                "{tmp}/p/projector.properties"),
    "consume property without =": bad("consume", "projector", "--property", "maxLeasesForWorker",
                                      "--properties-only"),
    "consume processor log level": bad("consume", "projector", "--processor-log-level", "LOUD",
                                       "--properties-only"),
    "consume properties under a file": bad("consume", "projector", "--properties-only", "--properties-out",
                                           "{file}/projector.properties"),
    "consume poll interval nan": bad("consume", "projector", "--engine", "local", "--poll-interval", "nan"),
    "consume poll interval negative": bad("consume", "projector", "--engine", "local", "--poll-interval", "-1"),
    "consume until-idle under kcl": bad("consume", "projector", "--until-idle"),
    "consume local unreachable": bad("consume", "projector", "--engine", "local", "--until-idle",
                                     "--endpoint-url", "{unreachable}"),
    "consume empty region": bad("consume", "projector", "--properties-only", "--region", ""),
    "consume bad endpoint port": bad("consume", "recovery", "--endpoint-url", "http://127.0.0.1:99999"),
    # --- local-stack ---------------------------------------------------------------------------
    "local-stack without kinesis-local": bad("local-stack", "--work-dir", "{tmp}/stack",
                                             GPU_RECOVERY_NODE_PREFIX="/nonexistent/node"),
    "local-stack zero shards": bad("local-stack", "--shards", "0"),
    "local-stack shards not a number": bad("local-stack", "--shards", "many"),
    "local-stack unknown consumer": bad("local-stack", "--consumers", "projector,janitor"),
    "local-stack work dir is a file": bad("local-stack", "--work-dir", "{file}"),
    # --- healthcheck ---------------------------------------------------------------------------
    "healthcheck level 9": bad("healthcheck", "--level", "9", "--stdout-only"),
    "healthcheck negative gpus": bad("healthcheck", "--expected-gpus", "-1", "--stdout-only"),
    "healthcheck gpus not a number": bad("healthcheck", "--expected-gpus", "eight", "--stdout-only"),
    "healthcheck diag timeout nan": bad("healthcheck", "--diag-timeout", "nan", "--stdout-only"),
    "healthcheck put attempts 0": bad("healthcheck", "--put-attempts", "0", "--stdout-only"),
    "healthcheck level in env": bad("healthcheck", "--stdout-only", GPU_RECOVERY_CHECK_LEVEL="9"),
    # --- replay --------------------------------------------------------------------------------
    "replay missing file": bad("replay", "--source", "file:{tmp}/nothing-here.jsonl", "--target", "none"),
    "replay truncated gzip": bad("replay", "--source", "file:{truncated}", "--target", "none", "--no-progress"),
    "replay garbage gzip": bad("replay", "--source", "file:{garbage}", "--target", "none", "--no-progress"),
    "replay unknown source": bad("replay", "--source", "ftp://archive", "--target", "none"),
    "replay s3 without bucket": bad("replay", "--source", "s3://", "--target", "none"),
    "replay since aged": bad("replay", "--source", "file:{empty}", "--since", AGED),
    "replay since not a date": bad("replay", "--source", "file:{empty}", "--since", "2026-13-45"),
    "replay target empty file": bad("replay", "--source", "file:{empty}", "--target", "file:"),
    "replay unknown target": bad("replay", "--source", "file:{empty}", "--target", "paper"),
    "replay target a folder": bad("replay", "--source", "file:{empty}", "--target", "file:{dir}", "--no-progress"),
    "replay target under a file": bad("replay", "--source", "file:{empty}", "--target", "file:{file}/out.json",
                                      "--no-progress"),
    "replay live without yes": bad("replay", "--source", "file:{empty}", "--target", "live"),
    "replay lease wait nan": bad("replay", "--source", "file:{empty}", "--lease-wait", "nan"),
    "replay unknown reader": bad("replay", "--reader", "telepathy"),
    "replay unreachable stream": bad("replay", "--endpoint-url", "{unreachable}", "--target", "none",
                                     "--no-progress"),
    "replay malformed endpoint": bad("replay", "--endpoint-url", "ftp://127.0.0.1", "--target", "none"),
    "replay endpoint from env": bad("replay", "--target", "none", "--no-progress", AWS_ENDPOINT_URL="not-a-url"),
    # --- audit ---------------------------------------------------------------------------------
    "audit without subject": bad("audit", "--source", "file:{empty}"),
    "audit two subjects": bad("audit", "--job", "a", "--node", "b"),
    "audit margin nan": bad("audit", "--job", "a", "--source", "file:{empty}", "--margin-minutes", "nan"),
    "audit margin huge": bad("audit", "--job", "a", "--source", "file:{empty}", "--margin-minutes", "1e300"),
    "audit missing source": bad("audit", "--job", "a", "--source", "file:{tmp}/none.jsonl"),
    "audit truncated gzip": bad("audit", "--node", "n", "--source", "file:{truncated}"),
    "audit html under a file": bad("audit", "--job", "a", "--source", "file:{empty}", "--html", "{file}/a.html"),
    "audit html onto a folder": bad("audit", "--job", "a", "--source", "file:{empty}", "--html", "{dir}"),
    # --- tail ----------------------------------------------------------------------------------
    "tail since aged": bad("tail", "--since", AGED, "--timeout", "0"),
    "tail since gibberish": bad("tail", "--since", "last tuesday", "--timeout", "0"),
    "tail negative max events": bad("tail", "--max-events", "-1"),
    "tail timeout nan": bad("tail", "--timeout", "nan"),
    "tail poll interval inf": bad("tail", "--poll-interval", "inf"),
    "tail since and from start": bad("tail", "--since", "1h", "--from-start"),
    "tail unreachable": bad("tail", "--endpoint-url", "{unreachable}", "--timeout", "1"),
    "tail empty stream name": bad("tail", "--stream-name", " ", "--timeout", "1"),
    # --- report --------------------------------------------------------------------------------
    "report since aged": bad("report", "--source", "file:{empty}", "--since", AGED),
    "report lookback aged": bad("report", "--source", "file:{empty}", "--lookback", AGED),
    "report lookback gibberish": bad("report", "--source", "file:{empty}", "--lookback", "a while"),
    "report lemon threshold 0": bad("report", "--source", "file:{empty}", "--lemon-threshold", "0"),
    "report missing source": bad("report", "--source", "file:{tmp}/none.jsonl"),
    "report truncated gzip": bad("report", "--source", "file:{truncated}"),
    "report garbage gzip": bad("report", "--source", "file:{garbage}"),
    "report html under a file": bad("report", "--source", "file:{empty}", "--html", "{file}/r.html"),
    "report unreachable": bad("report", "--endpoint-url", "{unreachable}"),
    # --- parked --------------------------------------------------------------------------------
    "parked without action": bad("parked"),
    "parked show without number": bad("parked", "show"),
    "parked show empty number": bad("parked", "show", ""),
    "parked redrive without selection": bad("parked", "redrive"),
    "parked redrive all and reason": bad("parked", "redrive", "--all", "--reason", "invalid"),
    "parked list unreachable": bad("parked", "list", "--endpoint-url", "{unreachable}"),
    "parked list unknown consumer": bad("parked", "list", "--consumer", "janitor"),
    # --- notify --------------------------------------------------------------------------------
    "notify without action": bad("notify"),
    "notify test unknown kind": bad("notify", "test", "--kind", "node_quarantine"),
    "notify test unreachable": bad("notify", "test", "--kind", "job_failed", "--endpoint-url", "{unreachable}"),
    # --- node (people in the loop; an unknown node needs a cluster: tests/test_operator_commands.py) -------
    "node without action": bad("node"),
    "node release without node": bad("node", "release"),
    "node release a task ARN": bad("node", "release", "arn:aws:ecs:us-east-1:123456789012:task/gpu-training/0abc"),
    "node release a truncated ARN": bad("node", "release", "arn:aws:ecs:us-east-1:123456789012:container-instance/"),
    "node release not a node name": bad("node", "release", "gpu node 2"),
    "node release reason too long": bad("node", "release", "i-0123456789abcdef0", "--reason", "x" * 1001),
    "node release unreachable": bad("node", "release", "i-0123456789abcdef0", "--endpoint-url", "{unreachable}"),
    "node release bad cluster name": bad("node", "release", "i-0123456789abcdef0", "--cluster", "gpu/training",
                                         "--endpoint-url", "{unreachable}"),
    "node release empty stream name": bad("node", "release", "i-0123456789abcdef0", "--stream-name", " "),
    # --- job -----------------------------------------------------------------------------------
    "job without action": bad("job"),
    "job cancel without job": bad("job", "cancel"),
    "job cancel empty job": bad("job", "cancel", " "),
    "job cancel unreachable": bad("job", "cancel", "job:llama-70b", "--endpoint-url", "{unreachable}"),
    "job cancel malformed endpoint": bad("job", "cancel", "job:llama-70b", "--endpoint-url", "not-a-url"),
    "job cancel unknown option": bad("job", "cancel", "job:llama-70b", "--force"),
    "job cancel bad region": bad("job", "cancel", "job:llama-70b", "--region", "moon-1",
                                 "--endpoint-url", "{unreachable}"),
    # --- simulate ------------------------------------------------------------------------------
    "simulate no nodes": bad("simulate", "--nodes", "0"),
    "simulate too many nodes": bad("simulate", "--nodes", "100000"),
    "simulate days not a number": bad("simulate", "--days", "a week"),
    "simulate bad jobs": bad("simulate", "--nodes", "8", "--jobs", "two"),
    "simulate jobs bigger than the fleet": bad("simulate", "--nodes", "8", "--jobs", "2x8"),
    "simulate unknown mix": bad("simulate", "--nodes", "8", "--fault-mix", "llama4"),
    "simulate mix not a mix": bad("simulate", "--nodes", "8", "--fault-mix", "{wrong_yaml}"),
    "simulate mix bad yaml": bad("simulate", "--nodes", "8", "--fault-mix", "{bad_yaml}"),
    "simulate unknown engine": bad("simulate", "--engine", "gpu"),
    "simulate settings not a mapping": bad("simulate", "--nodes", "8", "--settings", "{file}"),
    "simulate settings missing": bad("simulate", "--nodes", "8", "--settings", "{tmp}/none.yaml"),
}


@pytest.fixture
def run_bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
            ) -> Callable[[Bad], tuple[int, str]]:
    files = _files(tmp_path)
    monkeypatch.setattr(logging.root, "handlers", [])  # logging writes to this test's captured stderr

    def run(case: Bad) -> tuple[int, str]:
        for name, value in case.env.items():
            monkeypatch.setenv(name, value)
        try:
            code = main(case.resolved(files))
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.err + captured.out

    return run


@pytest.mark.parametrize("name", sorted(TABLE))
def test_a_bad_invocation_is_one_error_line_and_exit_2(name: str, run_bad: Callable[[Bad], tuple[int, str]]) -> None:
    # GIVEN a command line with one mistake in it; WHEN it runs
    code, output = run_bad(TABLE[name])
    # THEN it exits 2 with one line that says what is wrong and how to fix it, and no traceback
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("gpu-recovery: error:")]
    assert len(errors) == 1, output
    assert ERROR_LINE.match(errors[0]), errors[0]
    assert code == 2, output


def test_the_table_covers_every_command_with_at_least_60_invocations() -> None:
    commands = {name.replace("_", "-") for name in COMMANDS}
    covered = {case.argv[0] for case in TABLE.values() if case.argv and not case.argv[0].startswith("-")}
    assert commands <= covered, commands - covered
    assert len(TABLE) >= 60


def test_nothing_here_waits_on_the_network() -> None:
    # The unreachable endpoint really is unreachable: a connect is refused at once, it does not hang.
    import socket
    import time

    started = time.monotonic()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 9), timeout=2).close()
    assert time.monotonic() - started < 1.5
    assert os.environ.get("AWS_ENDPOINT_URL") is None
