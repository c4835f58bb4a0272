"""``gpu-recovery replay``: rebuild the tables from the stream or its archive; compare with live.

Replay never acts: it reads history, folds it with the live projector's pure core and the recovery
core's fold, and writes items and records. Nothing here (or in ``replay/``) imports an actuator or the
recovery consumer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

# gpu_recovery.wiring builds the recovery consumer and its actuators, which replay never reaches:
# the shared names come from gpu_recovery.apps instead, imported when a command runs (not on --help).
from gpu_recovery.commands.common import add_aws_options, number, settings_from

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

    from gpu_recovery.aws import AwsClients
    from replay.recovery import RecoveryFold, RecoveryRules
    from replay.sources import ClientFactory, Source

TARGET_HELP = ("shadow (default: new tables <name>-replay-<UTC time>, the recovery's too), file:PATH (one JSON "
               "object with a 'recovery' section, '-' for stdout), live (overwrite the live tables; needs --yes) "
               "or none (with --verify: compare only)")
EXIT_DIFFERENT = 1
EXIT_REFUSED = 2


def add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="stream",
                        help="stream (every shard, TRIM_HORIZON or --since, up to the tip at start), "
                        "s3://BUCKET/PREFIX (the Firehose archive, gzip or plain) or file:PATH "
                        "(a JSON Lines file or a folder of them, .gz too); default: stream")
    parser.add_argument("--since", type=timestamp, help="start at this time (ISO 8601, UTC if no zone); the "
                        "stream by arrival time, archives and files by each event's own time")
    parser.add_argument("--until", type=timestamp, help="stop after this time (same rules as --since)")
    parser.add_argument("--reader", choices=("process", "thread"), default="process",
                        help="--source stream: read the shards in a child process (default; parsing runs "
                        "beside the fold) or in threads of this one")


def open_history(args: argparse.Namespace, settings: Any, now: datetime, client: ClientFactory) -> Source:
    """The --source of a replay or audit; the stream through a child process unless --reader thread."""
    from functools import partial

    from replay.sources import open_source

    factory = partial(kinesis_client, settings) if args.reader == "process" else None
    if args.source == "stream" and factory is not None:
        _check_endpoints(settings)  # here, not in the reader process where it would read as a read error
    return open_source(args.source, clients=client, stream_name=settings.stream_name, now=now,
                       since=args.since, until=args.until, kinesis_factory=factory)


def _check_endpoints(settings: Any) -> None:
    from gpu_recovery.aws import check_endpoint

    for url in {settings.kinesis_endpoint_url or settings.endpoint_url} - {None}:
        check_endpoint(url)


def kinesis_client(settings: Any) -> KinesisClient:
    """A Kinesis client from settings; module-level so a reader process can unpickle it."""
    from gpu_recovery.aws import AwsClients

    return AwsClients(settings).client("kinesis")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay", help="rebuild the tables from the stream or its archive (never acts)",
        description="Fold the history with the live projector's own core, and the recovery core's fold, into "
        "shadow tables, a file or (with --yes) the live tables. --verify compares the result with the live "
        "tables and the live recovery state, and exits 1 on any difference. Replay makes no ECS, EC2, SSM or "
        "SNS call.",
    )
    add_aws_options(parser)
    add_source_options(parser)
    parser.add_argument("--target", default="shadow", help=TARGET_HELP)
    parser.add_argument("--verify", action="store_true",
                        help="compare the rebuilt items with the live tables, and the rebuilt recovery with the "
                        "live recovery table; exit 1 on any difference")
    parser.add_argument("--yes", action="store_true", help="confirm --target live")
    parser.add_argument("--force", action="store_true",
                        help="with --target live: overwrite even while consumers hold leases")
    parser.add_argument("--prune", action="store_true",
                        help="with --target live: also delete live items the replay did not produce")
    parser.add_argument("--lease-wait", type=number(0, 600), default=12.0, metavar="SECONDS",
                        help="with --target live: how long to watch owned leases for renewals (default 12; "
                        "KCL renews every failover/3 = 3.3 s); 0 counts every owned lease as held")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(handler=run)


def timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-28T10:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from replay.sources import SourceError
    from replay.targets import TargetError

    try:
        return _run(args)
    except (SourceError, TargetError, ClientError, BotoCoreError) as exc:
        return refused(exc)


def refused(exc: BaseException) -> int:
    """What replay (and audit) could not read or write, as one error line with what to check."""
    from botocore.exceptions import BotoCoreError, ClientError

    from gpu_recovery.commands.common import fail, one_line
    from replay.targets import TargetError

    if isinstance(exc, ClientError | BotoCoreError):
        fix = "check --stream-name, --region, --endpoint-url and the AWS credentials' access"
    else:
        fix = "check --target" if isinstance(exc, TargetError) else "check --source"
    return fail(one_line(str(exc)), fix)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gpu_recovery.aws import AwsClients
    from replay.rebuild import TimeWindow, rebuild, retention_json
    from replay.report import ReplayProgress, print_summary, print_verify

    settings = settings_from(args)
    now = datetime.now(UTC)
    target = _checked_target(args.target)
    out = Console(stderr=bool(args.json) or target == "file:-", highlight=False)
    clients = AwsClients(settings)  # clients on first use only: a file-to-file replay needs no AWS at all
    if target == "live" and not _live_allowed(args, clients, settings, Console(stderr=True, highlight=False)):
        return EXIT_REFUSED
    source = open_history(args, settings, now, clients.client)
    window = None if source.reads_window else TimeWindow(args.since, args.until)
    with ReplayProgress(source, enabled=not args.no_progress) as bar:
        from consumers.adapters.dynamodb import check_key
        from gpu_recovery.apps import projection_config
        from replay.recovery import RecoveryFold

        fold = RecoveryFold(recovery_rules(settings))
        # Keys the live tables would refuse are left out, as the live projector parks their records.
        rebuilt = rebuild(source.records(), projection_config(settings), window=window, tick=bar.tick,
                          check_key=check_key, recovery=fold)
    summary: dict[str, Any] = {"source": source.description, "target": target,
                               "stats": rebuilt.stats.as_json(), "items": rebuilt.items_per_table(),
                               "retention": retention_json(rebuilt.retention),
                               "recovery_fold": _fold_json(fold)}
    # Verify before writing: with --target live it reports what the overwrite is about to change.
    report = _verify(rebuilt, clients, settings, now) if args.verify else None
    if report is not None:
        summary["verify"] = report.as_json()
    summary.update(_write(target, rebuilt, clients, settings, now, args))
    for key, problem in summary.get("unwritable", {}).items():
        print(f"gpu-recovery replay: not written: {key}: {problem}", file=sys.stderr)
    for line in fold.stats.skipped:
        print(f"gpu-recovery replay: recovery skipped {line}", file=sys.stderr)
    for line in fold.stats.failed:
        print(f"gpu-recovery replay: recovery could not fold {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        print_summary(rebuilt, out, target=summary.get("written_to", target))
        if report is not None:
            print_verify(report, out)
    return EXIT_DIFFERENT if report is not None and not report.equal else 0


def recovery_rules(settings: Any) -> RecoveryRules:
    """The recovery consumer's folding rules from settings (``gpu_recovery.apps``: never the wiring)."""
    from datetime import timedelta

    from gpu_recovery.apps import identity_rules
    from replay.recovery import RecoveryRules

    return RecoveryRules(identity_rules(settings), settings.cluster_arn, timedelta(seconds=settings.future_skew_s))


def _fold_json(fold: RecoveryFold) -> dict[str, Any]:
    return {"records": fold.counts(), **fold.stats.as_json(), "tags_without_task": fold.tags_without_task}


def _checked_target(target: str) -> str:
    from replay.targets import TargetError

    if target.startswith("file:") and os.path.isdir(target.removeprefix("file:")):
        raise TargetError(f"--target {target}: that is a folder; name a file in it, e.g. {target}/tables.json")
    if target in ("shadow", "live", "none") or (target.startswith("file:") and len(target) > len("file:")):
        return target
    raise TargetError(f"--target {target!r}: expected shadow, file:PATH, live or none")


def _live_allowed(args: argparse.Namespace, clients: AwsClients, settings: Any, err: Any) -> bool:
    from gpu_recovery.apps import PROJECTOR_APP, RECOVERY_APP
    from replay.leases import check_consumers
    from replay.report import print_consumers

    if not args.yes:
        print("gpu-recovery: error: --target live overwrites the live tables (add --yes to confirm, or use "
              "--target shadow and --verify first)", file=sys.stderr)
        return False
    check = check_consumers(
        clients.client("dynamodb"), lease_tables=[PROJECTOR_APP, RECOVERY_APP],
        checkpoint_table=settings.checkpoint_table, applications=[PROJECTOR_APP, RECOVERY_APP],
        wait_s=args.lease_wait,
    )
    print_consumers(check, err)
    if check.busy and not args.force:
        print("gpu-recovery: error: refusing to overwrite the live tables while consumers are running (see "
              "'active' above; stop them first, or add --force if you know better)", file=sys.stderr)
        return False
    if check.busy:
        print("gpu-recovery replay: --force: overwriting although consumers are running", file=sys.stderr)
    return True


def _verify(rebuilt: Any, clients: AwsClients, settings: Any, now: datetime) -> Any:
    from botocore.exceptions import ClientError

    from consumers.adapters.dynamodb import DynamoProjectionStore
    from replay.recovery import live_summary, scan_records
    from replay.targets import TargetError
    from replay.verify import verify, verify_recovery

    dynamodb = clients.client("dynamodb")
    live = DynamoProjectionStore(dynamodb, settings.projection_tables())
    try:
        report = verify(rebuilt.state, live.scan_table, now_epoch=int(now.timestamp()))
        verify_recovery(report, live_summary(scan_records(dynamodb, settings.recovery_table)),
                        rebuilt.recovery.summary())
        return report
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        names = ", ".join([*settings.projection_tables().values(), settings.recovery_table])
        raise TargetError(f"--verify: a live table is missing (looked for {names} in {settings.region}"
                          f"{' at ' + settings.endpoint_url if settings.endpoint_url else ''}); "
                          "set TASK_TABLE_NAME / JOB_TABLE_NAME / NODE_TABLE_NAME / GPU_RECOVERY_STATE_TABLE if "
                          "they are named otherwise") from None


def _write(
    target: str, rebuilt: Any, clients: AwsClients, settings: Any, now: datetime, args: argparse.Namespace
) -> dict[str, Any]:
    from consumers.adapters.dynamodb import DynamoProjectionStore, create_tables
    from replay.targets import fill_tables, prune_tables, shadow_name, shadow_table_names, write_file

    if target == "none":
        return {"written_to": "nowhere (--target none)"}
    if target.startswith("file:"):
        write_file(rebuilt.state, target.removeprefix("file:"), rebuilt.recovery.summary())
        return {"written_to": target}
    dynamodb = clients.client("dynamodb")
    if target == "shadow":
        names = shadow_table_names(settings.projection_tables(), now)
        create_tables(dynamodb, names)
        report = fill_tables(DynamoProjectionStore(dynamodb, names), rebuilt.state, empty=True)
        recovery = _write_recovery(dynamodb, rebuilt, settings, shadow_name(settings.recovery_table, now))
        return {"written_to": "shadow tables " + ", ".join([*names.values(), recovery["recovery_table"]]),
                "shadow_tables": names, "written": report.written, "unwritable": report.unwritable, **recovery}
    names = settings.projection_tables()
    store = DynamoProjectionStore(dynamodb, names)
    report = fill_tables(store, rebuilt.state, empty=False)
    if args.prune:
        prune_tables(dynamodb, names, rebuilt.state, store.scan_table, report)
    recovery = _write_recovery(dynamodb, rebuilt, settings, None)
    return {"written_to": "live tables " + ", ".join([*names.values(), settings.recovery_table]),
            "written": report.written, "deleted": report.deleted, "conflicts": report.conflicts,
            "unwritable": report.unwritable, **recovery}


def _write_recovery(dynamodb: Any, rebuilt: Any, settings: Any, shadow: str | None) -> dict[str, Any]:
    """Recovery's records into a new shadow table (``shadow``) or over the live one, in its own layout."""
    from datetime import timedelta

    from consumers.adapters.dynamodb import create_tables
    from consumers.adapters.recovery_store import DynamoRecoveryStore
    from replay.recovery import fill_recovery_table

    table = shadow or settings.recovery_table
    if shadow is not None:
        create_tables(dynamodb, {"recovery": table})
    store = DynamoRecoveryStore(dynamodb, table, retention_days=settings.ttl_days)
    written = fill_recovery_table(store, rebuilt.recovery.bodies(), empty=shadow is not None,
                                  retention=timedelta(days=settings.ttl_days))
    return {"recovery_table": table, "recovery_written": written}
