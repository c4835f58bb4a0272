"""``python -m benchmarks [--quick] [--json] [--only core,cli,...]``: run the suite, print the figures.

Progress goes to stderr, one line per step; the results go to stdout: a table by default, or one JSON
object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from benchmarks.suite import GROUPS, KEYS, Sizes, run_suite


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and fewer runs (well under 5 min on 2 busy cores)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the smoke test's sizes
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated groups to run (default: all of {','.join(GROUPS)})")
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="run the embedded AWS in a child process (default) or in this one")
    args = parser.parse_args(argv)
    groups = tuple(g.strip() for g in args.only.split(",") if g.strip())
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    args.groups = groups
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.tiny() if args.tiny else Sizes.quick() if args.quick else Sizes.full()
    sizes = replace(sizes.only(args.groups), server=args.server)
    result = run_suite(sizes)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) < 10:
        return f"{value:.3g}"
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


def _value(key: str, fig: dict[str, Any]) -> str:
    if key == "replay.peak_rss_mb" and "by_events" in fig:
        small, large = fig["by_events"].items()
        return (f"{_number(small[1]['median'])} MiB @{int(small[0]):,} -> {_number(large[1]['median'])} MiB "
                f"@{int(large[0]):,} (x{_number(fig['growth']['median'])})")
    return f"{_number(fig.get('value'))} {fig.get('unit', '')}".strip()


def _baseline(fig: dict[str, Any]) -> str:
    base = fig.get("baseline")
    if not base or "median" not in base:
        return ""
    return f"{_number(base['median'])} {base.get('unit', '')}: {base.get('label', base['what'])}"


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    machine = result["machine"]
    table = Table(title=f"gpu-recovery benchmarks ({result['mode']}, {result['seconds']} s) on "
                        f"{machine['nproc']} x {machine['cpu_model']}, {machine['memory_gib']} GiB, "
                        f"Python {machine['python']}, load {machine['load_average']}")
    for column in ("figure", "median", "runs", "min .. max", "baseline (same run)", "target", "met"):
        table.add_column(column, overflow="fold")
    for group in GROUPS:
        for key in KEYS[group]:
            fig = result.get(key)
            if fig is None:
                continue
            if "error" in fig:
                table.add_row(key, "[red]not measured[/red]", "", "", fig["error"][:80], "", "")
                continue
            target = fig.get("target")
            target_text = f"{target['op']} {target['value']:g}" if target else ""
            met = fig.get("met")
            met_text = "" if met is None else "[green]yes[/green]" if met else "[red]NO[/red]"
            spread = "" if key == "replay.peak_rss_mb" else f"{_number(fig['min'])} .. {_number(fig['max'])}"
            table.add_row(key, _value(key, fig), str(len(fig.get("runs", []))), spread, _baseline(fig), target_text,
                          met_text)
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)  # a file or a pipe: do not wrap to 80 columns
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
