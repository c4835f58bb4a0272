"""One writer at a time for the recovery consumer's shared state: a lease item in its DynamoDB table.

The recovery policy decides over the whole cluster (a job's ranks sit on several nodes, so on several
shards; the breaker counts every GPU node), but the KCL runs one processor per shard, each in its own
process, possibly on several machines. So each processor takes this lock around a batch, brings its
copy of the state up to date, decides, acts, saves, and lets go.

The lease expires (wall-clock seconds) so that a SIGKILLed holder cannot block the others for long;
the holder renews it before every AWS call it makes, and stops (``LockLost``) if another process took
it meanwhile, so two processes never act on the same state.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import call
from consumers.core.errors import TransientError

log = logging.getLogger("gpu_recovery.state_lock")
LOCK_PK = "_lock"


class LockLost(TransientError):
    """Another process holds the state now: stop without saving or checkpointing (the batch comes again)."""


class StateLock(Protocol):
    def held(self) -> Any: ...  # a context manager

    def confirm(self) -> None: ...


class NoLock:
    """One process owns the state (the in-process reader reads every shard itself)."""

    @contextmanager
    def held(self) -> Iterator[None]:
        yield

    def confirm(self) -> None:
        return None


@dataclass(frozen=True)
class LockTiming:
    lease_s: float = 120.0  # longer than any batch's work; a dead holder blocks the others this long at most
    renew_after_s: float = 30.0  # confirm() extends the lease once this much of it has gone
    wait_s: float = 300.0  # give up (TransientError: the processor retries with backoff) after this
    poll_min_s: float = 0.01
    poll_max_s: float = 0.5


class DynamoStateLock:
    def __init__(
        self,
        client: Any,
        table_name: str,
        owner: str,
        *,
        name: str = "recovery",
        timing: LockTiming | None = None,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table_name
        self._owner = owner
        self._key = {"pk": {"S": LOCK_PK}, "sk": {"S": name}}
        self._timing = timing or LockTiming()
        self._wall = wall
        self._sleep = sleep
        self._renewed_at: float | None = None

    @property
    def owner(self) -> str:
        return self._owner

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        started = self._wall()
        delay = self._timing.poll_min_s
        while not self._try_take():
            if self._wall() - started > self._timing.wait_s:
                raise TransientError(f"state lock {self._key['sk']['S']!r} busy for {self._timing.wait_s:.0f}s "
                                     f"in table {self._table}")
            self._sleep(delay * (0.5 + random.random()))  # jitter: waiters do not poll in step
            delay = min(self._timing.poll_max_s, delay * 2)

    def confirm(self) -> None:
        """Before a side effect: still ours? Extends the lease when due; raises LockLost if taken."""
        if self._renewed_at is None:
            raise LockLost("the state lock is not held")
        if self._wall() - self._renewed_at < self._timing.renew_after_s:
            return
        now = self._wall()
        try:
            call(self._client.update_item, TableName=self._table, Key=self._key,
                 UpdateExpression="SET expires_at_s = :exp",
                 ConditionExpression="#owner = :me",
                 ExpressionAttributeNames={"#owner": "owner"},
                 ExpressionAttributeValues={":exp": {"N": _num(now + self._timing.lease_s)},
                                            ":me": {"S": self._owner}})
        except ClientError as exc:
            if _conditional(exc):
                self._renewed_at = None
                raise LockLost(f"state lock taken over from {self._owner}") from exc
            raise
        self._renewed_at = now

    def release(self) -> None:
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            call(self._client.delete_item, TableName=self._table, Key=self._key,
                 ConditionExpression="#owner = :me", ExpressionAttributeNames={"#owner": "owner"},
                 ExpressionAttributeValues={":me": {"S": self._owner}})
        except ClientError as exc:
            if not _conditional(exc):
                raise
            log.warning("state lock had already passed to another process when %s let go", self._owner)

    def _try_take(self) -> bool:
        now = self._wall()
        lease = {"owner": {"S": self._owner}, "expires_at_s": {"N": _num(now + self._timing.lease_s)}}
        try:
            call(self._client.put_item, TableName=self._table, Item={**self._key, **lease},
                 ConditionExpression="attribute_not_exists(pk) OR expires_at_s < :now OR #owner = :me",
                 ExpressionAttributeNames={"#owner": "owner"},
                 ExpressionAttributeValues={":now": {"N": _num(now)}, ":me": {"S": self._owner}})
        except ClientError as exc:
            if _conditional(exc):
                return False
            raise
        self._renewed_at = now
        return True


def _num(value: float) -> str:
    return f"{value:.3f}"


def _conditional(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")
