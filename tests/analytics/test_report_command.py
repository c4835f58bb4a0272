"""``gpu-recovery report`` end to end: from a file and from the stream, as JSON, tables and an HTML page."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from rich.console import Console

from analytics.history import decode_all
from analytics.html import report_html
from analytics.render import duration, print_report
from analytics.report import Report, build_report
from analytics.svg import histogram, nice_step
from gpu_recovery.cli import main
from tests.analytics import scenario
from tests.analytics.test_report import build, scenario_bytes

RANGE = ["--since", scenario.SINCE.isoformat(), "--until", scenario.UNTIL.isoformat()]


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(scenario_bytes()) + b"\n")
    return path


def test_report_from_a_file_as_json_has_the_hand_computed_figures(
        history_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN the report is asked for as JSON from a JSON Lines file
    code = main(["report", "--source", f"file:{history_file}", *RANGE, "--json"])
    # THEN it is the report of the pure core on the same history (whose figures test_report checks by hand)
    assert code == 0
    got = Report.model_validate_json(capsys.readouterr().out)
    expected = build()
    assert got.model_dump(exclude={"unreadable"}) == expected.model_dump(exclude={"unreadable"})
    assert (got.incidents, got.automatic_recovery_rate, got.time_to_recovery.mean_s) == (4, 0.75, 325.0)


def test_report_from_the_stream(moto_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the history in a 2-shard stream on the embedded moto server
    client = boto3.client("kinesis", endpoint_url=moto_server, region_name="us-east-1")
    stream = f"report-{time.monotonic_ns()}"
    client.create_stream(StreamName=stream, ShardCount=2)
    for n, data in enumerate(scenario_bytes()):
        client.put_record(StreamName=stream, Data=data, PartitionKey=f"pk-{n % 5}")
    # WHEN the report reads the whole stream
    code = main(["report", "--endpoint-url", moto_server, "--stream-name", stream, "--json"])
    # THEN it equals the pure report over the same events (no range: inc-Z is in)
    assert code == 0
    got = Report.model_validate_json(capsys.readouterr().out)
    assert got == build_report(decode_all(scenario_bytes()).events)
    assert got.incidents == 5


def test_report_tables_and_html_page(history_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    # WHEN the report prints tables and writes a page
    code = main(["report", "--source", f"file:{history_file}", *RANGE, "--html", str(page)])
    out = capsys.readouterr().out
    # THEN the tables carry the key figures
    assert code == 0
    assert "75% (3 of 4)" in out and "LEMON" in out and "380.6 GPU-hours" in out
    assert f"wrote {page}" in out
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_the_page_is_self_contained_with_three_charts() -> None:
    html = report_html(build())
    # THEN nothing is fetched: no script, stylesheet link, image or url()
    for needle in ("<script", "<link", "<img", "src=", "href=", "url(", "@import", "http://", "https://"):
        assert needle not in html, needle
    assert html.count("<svg") == 3
    # the histogram holds the three recovered incidents (95 s, 400 s, 480 s)
    assert sum(int(n) for n in re.findall(r'class="bin" data-count="(\d+)"', html)) == 3
    # faults over time: day 0 two hardware, day 1 one hardware and one application
    assert re.findall(r'class="(hardware|application)" data-day="([\d-]+)" data-count="(\d+)"', html) == [
        ("hardware", "2026-11-27", "2"), ("hardware", "2026-11-28", "1"), ("application", "2026-11-28", "1")]
    # the heat map: three nodes x two days, node 3 once each day
    cells = re.findall(r'class="cell" data-node="[^"]*/(node\d+)" data-day="([\d-]+)" data-count="(\d+)"', html)
    assert len(cells) == 6
    assert ("node0003", "2026-11-27", "1") in cells and ("node0003", "2026-11-28", "1") in cells
    assert ("node0005", "2026-11-27", "0") in cells


def test_the_page_escapes_what_it_shows() -> None:
    report = build().model_copy(update={"outcomes": {"<script>alert(1)</script>": 1}})
    assert "<script>alert" not in report_html(report)


def test_an_empty_report_renders() -> None:
    empty = build_report([])
    assert "No incident" in report_html(empty)
    console = Console(record=True, width=120)
    print_report(empty, console)
    assert "0 job interruptions" in console.export_text()


@pytest.mark.parametrize(("values", "bins"), [
    ([95.0, 400.0, 480.0], [(0.0, 50.0, 0), (50.0, 100.0, 1)]),
    ([100.0], [(0.0, 10.0, 0)]),
])
def test_histogram_bins_start_at_zero_and_hold_every_value(values: list[float], bins: list[Any]) -> None:
    got = histogram(values)
    assert got[: len(bins)] == bins
    assert sum(c for _, _, c in got) == len(values)
    assert got[-1][0] <= max(values) < got[-1][1]


def test_nice_steps_and_durations() -> None:
    assert [nice_step(s) for s in (480, 95, 7, 0)] == [50.0, 10.0, 1.0, 1.0]
    assert [duration(s) for s in (None, 5, 95, 3725)] == ["-", "5s", "1m 35s", "1h 2m 5s"]


def test_report_rejects_a_bad_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--source", "file:/nonexistent", "--since", "someday"]) == 2
    assert "neither an ISO 8601 time" in capsys.readouterr().err
    assert main(["report", "--source", "file:/nonexistent/history.jsonl"]) == 2
    assert "does not exist" in capsys.readouterr().err
