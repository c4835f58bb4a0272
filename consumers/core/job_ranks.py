"""A job's ranks as its ``ecs_job`` item keeps them: one short string per rank of the current generation.

A job item that kept one map entry per rank of every generation (node, stop code, exit code, task
definition, ...: ~435 bytes a rank, 350-530 more per rank at each restart) passed DynamoDB's 400 KB item
limit at the first generation of a 2,048-rank job. The job item keeps only what the job's state needs of a
rank, about 41 bytes: its view (stage; failed, ``UserInitiated``, stopped by recovery), its newest event's
time, when it was created (which generation) and its version (last-writer-wins). Everything else about a
rank is in its ``ecs_task`` item.

The key is the task id (the ARN's last part; a job's ranks are in one cluster, the job's ``cluster_arn``):
32 hex digits are written as 22 base64url characters, any other id as ``=`` and the id, an ARN of the older
format (``task/ID``) as the ARN. Times are kept to the millisecond, as ECS gives them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter

from consumers.core.clocktext import iso, parse_iso

FAILED, USER_INITIATED, RECOVERY_STOP = 1, 2, 4
RAW_ID = "="
CODE_WIDTH = 2  # the stage (0-7) and the flags (0-7)
AT_WIDTH = 9  # milliseconds since 1970 in base 36: nine digits last until the year 5138


@dataclass(frozen=True)
class Rank:
    """What the job's state needs of one rank."""

    version: int
    stage: int
    failed: bool
    user_initiated: bool  # its stop code is UserInitiated (a user's stop, unless it was recovery's)
    recovery_stop: bool
    created_ms: int
    at_ms: int

    @property
    def at(self) -> str:
        return iso_of_ms(self.at_ms)

    @property
    def created_at(self) -> str:
        return iso_of_ms(self.created_ms)


def encode(rank: Rank) -> str:
    """``<stage><flags><newest event, 9 base-36 digits of ms>.<ms since created>.<version>``: the first two
    characters are the rank's view and the next nine sort as its time, so a job's summary is a count of
    prefixes and a max of slices (C loops, not one Python call per rank at each of its 2,048 ranks' events)."""
    flags = FAILED * rank.failed | USER_INITIATED * rank.user_initiated | RECOVERY_STOP * rank.recovery_stop
    return f"{rank.stage}{flags}{_b36(rank.at_ms).rjust(AT_WIDTH, '0')}.{_b36(rank.at_ms - rank.created_ms)}." \
           f"{_b36(rank.version)}"


@lru_cache(maxsize=16384)
def decode(value: str) -> Rank:
    offset, version = value[CODE_WIDTH + AT_WIDTH + 1:].split(".")
    flags = int(value[1])
    at_ms = int(value[CODE_WIDTH:CODE_WIDTH + AT_WIDTH], 36)
    return Rank(version=int(version, 36), stage=int(value[0]), failed=bool(flags & FAILED),
                user_initiated=bool(flags & USER_INITIATED), recovery_stop=bool(flags & RECOVERY_STOP),
                created_ms=at_ms - int(offset, 36), at_ms=at_ms)


# C-level slicers: a job's summary reads them over each of its ranks at every rank's event.
view_code: Callable[[str], str] = itemgetter(slice(0, CODE_WIDTH))
at_text: Callable[[str], str] = itemgetter(slice(CODE_WIDTH, CODE_WIDTH + AT_WIDTH))  # sorts as the time does


def code_failed(code: str) -> bool:
    return bool(int(code[1]) & FAILED)


def ms_of_at_text(text: str) -> int:
    return int(text, 36)


def rank_key(task_arn: str) -> str:
    """``arn:...:task/CLUSTER/ID`` -> ID, 32 hex digits as 22 base64url characters; any other ARN as it is."""
    _, _, path = task_arn.partition(":task/")
    if path.count("/") != 1:
        return task_arn  # the older format (task/ID: no cluster) or not a task ARN
    task_id = path.split("/")[1]
    if len(task_id) == 32:
        try:
            return base64.urlsafe_b64encode(bytes.fromhex(task_id)).decode().rstrip("=")
        except ValueError:
            pass  # not hex: kept as it is
    return RAW_ID + task_id


def task_arn_of(key: str, cluster_arn: str | None) -> str:
    if ":" in key:
        return key
    prefix = task_prefix(cluster_arn) or ""
    if key.startswith(RAW_ID):
        return prefix + key[len(RAW_ID):]
    try:
        return prefix + base64.urlsafe_b64decode(key + "==").hex()
    except (binascii.Error, ValueError):
        return prefix + key


def task_prefix(cluster_arn: str | None) -> str | None:
    """``arn:aws:ecs:R:A:cluster/NAME`` -> ``arn:aws:ecs:R:A:task/NAME/`` (ECS's task ARN format)."""
    if not cluster_arn or ":cluster/" not in cluster_arn:
        return None
    return cluster_arn.replace(":cluster/", ":task/", 1) + "/"


def ms_of_iso(text: str) -> int:
    moment = parse_iso(text)
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


@lru_cache(maxsize=4096)
def iso_of_ms(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=(ms % 1000) * 1000))


def _b36(number: int) -> str:
    if number < 0:
        return "-" + _b36(-number)
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        if number == 0:
            return digits
