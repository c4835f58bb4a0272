"""The records a batch of outcomes loads up front: a burst's outcomes must not need one round trip each.

The consumer decides a batch again after each ``NeedMore`` and gives up after ``ROUNDS`` tries; before these
keys were loaded up front, a job of more than ~25 ranks failed every restart with "records still contended"
(found by the burst benchmark: 32 and 64 ranks on the embedded AWS).
"""

from __future__ import annotations

from consumers.core.recovery.decide import OutcomeInput
from consumers.recovery import ROUNDS, _first_keys
from events_schema.commands import ListTagsForResource, StartTask
from events_schema.events import ActionOutcome

AT = "2026-11-29T12:00:00.000Z"


def _outcome(n: int, action: ListTagsForResource | StartTask, detail: dict[str, str]) -> OutcomeInput:
    return OutcomeInput(ActionOutcome(idempotency_key=f"k{n}", action=action, job_id="job:big", status="succeeded",
                                      detail=detail), AT)


def test_every_rank_a_batch_of_outcomes_names_is_loaded_with_the_first_read() -> None:
    # GIVEN one batch with more ranks than the consumer has rounds: each rank's tags read and its restart
    ranks = ROUNDS * 2
    tags = [_outcome(n, ListTagsForResource(target=f"arn:task/old-{n}"), {}) for n in range(ranks)]
    starts = [_outcome(ranks + n, StartTask(target=f"arn:ci/{n}", purpose="rank", task_definition="llm:1"),
                       {"task_arn": f"arn:task/new-{n}"}) for n in range(ranks)]
    # WHEN the consumer works out what to load first
    keys = _first_keys([*tags, *starts])
    # THEN every task is in it (old ranks by their tags' target, new ones by the task ECS started), and the job
    assert {("task", f"arn:task/old-{n}") for n in range(ranks)} <= keys
    assert {("task", f"arn:task/new-{n}") for n in range(ranks)} <= keys
    assert ("job", "job:big") in keys


def test_a_start_that_failed_names_no_task() -> None:
    failed = OutcomeInput(ActionOutcome(idempotency_key="k", action=StartTask(
        target="arn:ci/1", purpose="rank", task_definition="llm:1"), status="failed", error="no capacity"), AT)
    assert {k for k in _first_keys([failed]) if k[0] == "task"} == set()
