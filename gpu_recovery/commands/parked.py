"""``gpu-recovery parked list|show|redrive``: the records the consumers parked, and putting them back.

A consumer parks a record it cannot decode, fold or store (shard, sequence number, reason, exception,
raw bytes), and goes on. After a fix, ``redrive`` puts selected records back on the stream, like a
dead-letter queue's redrive: once each (the parked entry is marked first, conditionally), with the
record's own partition key, so both consumers read it again in order with what follows. A record
parked by both consumers is put back once. Consumers are at-least-once, so a copy that one of them
had handled already changes nothing there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from gpu_recovery.commands.common import add_aws_options, fail, non_empty, settings_from

CONSUMERS = ("projector", "recovery")
MAX_PARTITION_KEY = 256
HEX_SHOWN = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "parked", help="list, show and redrive the records the consumers parked",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="parked_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="parked records by reason and time (a table, or --json)")
    _common(listing)
    listing.add_argument("--reason", action="append", default=[], metavar="KIND",
                         help="only this reason kind (not_json, invalid, fold_error, unwritable, ...); repeatable")
    listing.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="one parked record, its raw bytes decoded where possible")
    _common(show)
    show.add_argument("sequence_number", type=non_empty("a sequence number"), help="the record's sequence number")
    show.add_argument("--shard", help="its shard, when the number is parked on two shards")
    show.set_defaults(handler=run_show)
    redrive = actions.add_parser("redrive", help="put selected parked records back on the stream (once each)")
    _common(redrive)
    pick = redrive.add_mutually_exclusive_group(required=True)
    pick.add_argument("--sequence-number", action="append", metavar="SEQ", help="this record; repeatable")
    pick.add_argument("--reason", action="append", metavar="KIND", help="every record parked for this reason kind")
    pick.add_argument("--all", action="store_true", help="every parked record not redriven yet")
    redrive.add_argument("--dry-run", action="store_true", help="say what would be put back, put nothing")
    redrive.set_defaults(handler=run_redrive)


def _common(parser: argparse.ArgumentParser) -> None:
    add_aws_options(parser)
    parser.add_argument("--consumer", choices=CONSUMERS, help="only what this consumer parked")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


class _Lot:
    """The parking lot and the stream, from settings (clients made on first use)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from consumers.adapters.dynamodb import DynamoParkingLot
        from gpu_recovery.aws import AwsClients

        self.settings = settings_from(args)
        self.clients = AwsClients(self.settings)
        bucket = self.settings.parked_archive_bucket
        self.lot = DynamoParkingLot(self.clients.client("dynamodb"), self.settings.parked_table,
                                    s3=self.clients.client("s3") if bucket else None, archive_bucket=bucket)

    def rows(self, consumer: str | None) -> list[dict[str, Any]]:
        from botocore.exceptions import ClientError

        from consumers.core.errors import ConfigError

        try:
            return self.lot.list(consumer)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            raise ConfigError(f"no parked-records table {self.settings.parked_table!r} in {self.settings.region} "
                              "(set GPU_RECOVERY_PARKED_TABLE, --region or --endpoint-url)") from None


# --- list -----------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    rows = [r for r in _Lot(args).rows(args.consumer) if not args.reason or r.get("reason_kind") in args.reason]
    rows.sort(key=lambda r: (str(r.get("reason_kind")), str(r.get("parked_at")), _seq(r)))
    if args.json:
        print(json.dumps([summary(r) for r in rows], indent=2, sort_keys=True, default=str))
        return 0
    print_table(rows)
    return 0


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """A parked entry without its bytes."""
    return {k: v for k, v in row.items() if k not in ("data_b64", "consumer_shard")}


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    if not rows:
        console.print("no parked records")
        return
    table = Table(title=f"{len(rows)} parked records, by reason and time")
    for column in ("reason", "parked at", "consumer", "shard", "sequence number", "error", "bytes", "why",
                   "redriven"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(str(r.get("reason_kind")), str(r.get("parked_at") or "-"), str(r.get("consumer")),
                      str(r.get("shard_id")), str(r.get("sequence_number")), str(r.get("error_type") or "-"),
                      f"{r.get('size', len(r.get('data_b64', '')) * 3 // 4):,}", str(r.get("reason", ""))[:100],
                      str(r.get("redriven_as") or r.get("redriven_at") or ""))
    console.print(table)
    counts = Counter(str(r.get("reason_kind")) for r in rows)
    console.print(", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items())))


# --- show -----------------------------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    lot = _Lot(args)
    rows = [r for r in lot.rows(args.consumer) if r["sequence_number"] == args.sequence_number
            and (args.shard is None or r["shard_id"] == args.shard)]
    if not rows:
        return fail(f"no parked record with sequence number {args.sequence_number}",
                    "see 'gpu-recovery parked list'")
    if len({r["shard_id"] for r in rows}) > 1:
        return fail(f"sequence number {args.sequence_number} is parked on several shards",
                    "add --shard " + " or --shard ".join(sorted({str(r['shard_id']) for r in rows})))
    data = lot.lot.raw_data(rows[0])
    shown = decoded_view(data if data is not None else _head(rows[0]), complete=data is not None)
    if args.json:
        print(json.dumps({"entries": [summary(r) for r in rows], "data": shown}, indent=2, sort_keys=True,
                         default=str))
        return 0
    for row in rows:
        for key, value in sorted(summary(row).items()):
            print(f"{key:>16}: {value}")
        print()
    print(f"--- data ({shown['as']}{'' if shown['complete'] else ', first 64 KB only'}) ---")
    print(shown["text"])
    return 0


def _head(row: dict[str, Any]) -> bytes:
    import base64

    return base64.b64decode(row.get("data_b64", ""))


def decoded_view(data: bytes, *, complete: bool) -> dict[str, Any]:
    """The raw bytes as people read them: indented JSON, else UTF-8 text, else a hex dump."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"as": "hex", "complete": complete, "text": hex_dump(data[:HEX_SHOWN])}
    try:
        return {"as": "json", "complete": complete, "text": json.dumps(json.loads(text), indent=2)}
    except (ValueError, RecursionError):
        pass
    if any(_CONTROL.match(char) for char in text):  # a terminal must not receive escape sequences from a record
        return {"as": "hex", "complete": complete, "text": hex_dump(data[:HEX_SHOWN])}
    return {"as": "text", "complete": complete, "text": text}


def hex_dump(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {printable}")
    return "\n".join(lines)


# --- redrive --------------------------------------------------------------------------------------


def run_redrive(args: argparse.Namespace) -> int:
    lot = _Lot(args)
    rows = selected(lot.rows(args.consumer), args.sequence_number, args.reason, args.all)
    if not rows:
        return fail("no parked record matches", "see 'gpu-recovery parked list'")
    results = [_redrive_one(lot, group, dry_run=args.dry_run) for group in by_record(rows)]
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        for result in results:
            print(f"{result['shard_id']} {result['sequence_number']}: {result['result']}")
    failed = [r for r in results if r["result"].startswith("not redriven")]
    if failed:
        print(f"gpu-recovery parked: {len(failed)} of {len(results)} records could not be redriven (see above)",
              file=sys.stderr)
    return 1 if failed else 0


def selected(rows: Iterable[dict[str, Any]], sequence_numbers: list[str] | None, reasons: list[str] | None,
             everything: bool) -> list[dict[str, Any]]:
    if everything:
        return list(rows)
    if sequence_numbers:
        return [r for r in rows if r["sequence_number"] in sequence_numbers]
    return [r for r in rows if r.get("reason_kind") in (reasons or [])]


def by_record(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries of one stream record (both consumers may have parked it) together, in stream order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["shard_id"]), str(row["sequence_number"])), []).append(row)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], int(k[1])))]


def _redrive_one(lot: _Lot, group: list[dict[str, Any]], *, dry_run: bool) -> dict[str, str]:
    first = group[0]
    result = {"shard_id": str(first["shard_id"]), "sequence_number": str(first["sequence_number"]),
              "consumers": ",".join(sorted(str(r["consumer"]) for r in group))}
    done = next((r for r in group if r.get("redriven_at")), None)
    if done is not None:
        return {**result, "result": f"already redriven ({done.get('redriven_as') or 'in progress'}); skipped"}
    data = lot.lot.raw_data(first)
    if data is None:
        return {**result, "result": "not redriven: only its first 64 KB was kept and no archive copy is reachable "
                                    "(set GPU_RECOVERY_PARKED_ARCHIVE_BUCKET)"}
    if dry_run:
        return {**result, "result": f"would be redriven ({len(data):,} bytes)"}
    return {**result, "result": _put_back(lot, group, data)}


def _put_back(lot: _Lot, group: list[dict[str, Any]], data: bytes) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    if not lot.lot.claim_redrive(group[0]):
        return "already redriven by someone else; skipped"
    try:
        response = lot.clients.client("kinesis").put_record(
            StreamName=lot.settings.stream_name, Data=data, PartitionKey=partition_key(group[0]))
    except (BotoCoreError, ClientError) as exc:  # claimed but not put: free it for the next try
        lot.lot.release_redrive(group[0])
        return f"not redriven: {type(exc).__name__}: {exc}"
    new_sequence = str(response["SequenceNumber"])
    lot.lot.redriven_as(group[0], new_sequence)
    for other in group[1:]:  # the same record, parked by the other consumer: put back once, marked on both
        if lot.lot.claim_redrive(other):
            lot.lot.redriven_as(other, new_sequence)
    return f"redriven as {new_sequence}"


def partition_key(row: dict[str, Any]) -> str:
    key = str(row.get("partition_key") or "")
    return key if 0 < len(key) <= MAX_PARTITION_KEY else f"redrive-{row['sequence_number']}"


def _seq(row: dict[str, Any]) -> int:
    text = str(row.get("sequence_number", ""))
    return int(text) if text.isdigit() else 0

