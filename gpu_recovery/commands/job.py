"""``gpu-recovery job cancel JOB``: ask recovery to stop recovering a job: it ends STOPPED_BY_USER, nothing is
restarted.

The command appends an ``OperatorRequested`` event (``cancel_job``) to the stream, keyed by the job id, and
returns; the recovery consumer acts on it (docs/operations.md). A job that is not in recovery is left as it is.
"""

from __future__ import annotations

import argparse
from typing import Any

from gpu_recovery.commands.common import add_aws_options, settings_from
from gpu_recovery.commands.operator import add_reason_option, job_id


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "job", help="people in the loop: cancel a job's recovery (nothing restarted)",
        description="Requests to recovery about a job; each is an event on the stream (docs/operations.md).",
    )
    actions = parser.add_subparsers(dest="job_action", required=True, metavar="ACTION")
    cancel = actions.add_parser(
        "cancel", help="end a recovering job: STOPPED_BY_USER, nothing restarted",
        description="Appends an OperatorRequested event (cancel_job) to the stream. The recovery consumer then "
        "ends the job's recovery: the job becomes STOPPED_BY_USER, any of its ranks still running are "
        "stopped, nothing is restarted. The checks of its nodes go on. A job that is not in recovery is left as it is "
        "(to stop a running job, stop its tasks).",
    )
    cancel.add_argument("job", type=job_id, metavar="JOB", help="the job id (the tasks' group, e.g. job:llama-70b)")
    add_reason_option(cancel)
    add_aws_options(cancel)
    cancel.set_defaults(handler=run_cancel)


def run_cancel(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from consumers.core.errors import TransientError
    from gpu_recovery.aws import AwsClients
    from gpu_recovery.commands.operator import aws_refused

    settings = settings_from(args)
    try:
        return _cancel(settings, AwsClients(settings), args.job, args.reason)
    except (ClientError, BotoCoreError, TransientError) as exc:
        return aws_refused(exc)


def _cancel(settings: Any, clients: Any, job: str, reason: str) -> int:
    from events_schema.events import OperatorRequested
    from gpu_recovery.commands.operator import append, caller, request_event, say_who, sent_lines, utc_now

    who = caller(clients)
    say_who(who)
    data = OperatorRequested(request="cancel_job", job_id=job, requested_by=who.name, reason=reason)
    envelope = request_event(data, now=utc_now())
    sequence = append(settings, envelope)
    print(f"asked recovery to cancel the recovery of job {job}")
    for line in sent_lines(envelope, sequence, settings, who, reason):
        print(line)
    print("The recovery consumer acts on it: if the job is in recovery, it ends STOPPED_BY_USER, any of its ranks "
          "still running are stopped and nothing is restarted; the checks of its nodes go on. A job that is not in "
          "recovery is left as it is (to stop a running job, stop its tasks: recovery records that too).")
    print(f"Follow it: gpu-recovery audit --job {job}")
    return 0
