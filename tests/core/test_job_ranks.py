"""A job item's short rank strings (consumers/core/job_ranks.py) and the generation summary kept next to them."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.core import projection
from consumers.core.facts import STAGES, RankView, lifecycle
from consumers.core.job_ranks import Rank, decode, encode, rank_key, task_arn_of
from consumers.core.projection import JOB, ProjectionState, fold
from tests.core.test_projection import CONFIG, ev, histories
from tests.factories import CLUSTER

MS_2020, MS_5000 = 1_577_836_800_000, 95_617_584_000_000

ranks = st.builds(
    Rank, version=st.integers(0, 10**6), stage=st.integers(0, len(STAGES) - 1), failed=st.booleans(),
    user_initiated=st.booleans(), recovery_stop=st.booleans(), created_ms=st.integers(MS_2020, MS_5000),
    at_ms=st.integers(MS_2020, MS_5000))


@settings(max_examples=200, deadline=None)
@given(ranks, ranks)
def test_a_rank_string_gives_back_its_rank_and_sorts_by_its_time(rank: Rank, other: Rank) -> None:
    # GIVEN any two ranks WHEN they are written as strings THEN each reads back as it was ...
    assert decode(encode(rank)) == rank
    # ... and their time slices (characters 2-10) order as their newest events do
    assert (encode(rank)[2:11] < encode(other)[2:11]) == (rank.at_ms < other.at_ms)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(min_size=16, max_size=16).map(bytes.hex), st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True)))
def test_a_rank_key_gives_back_the_task_arn(task_id: str) -> None:
    # GIVEN a task ARN of the cluster (ECS's 32 hex digits, or any other id)
    arn = CLUSTER.replace(":cluster/", ":task/") + "/" + task_id
    # WHEN it is keyed THEN the key reads back as the ARN, and 32 hex digits take 22 characters
    key = rank_key(arn)
    assert task_arn_of(key, CLUSTER) == arn
    assert len(key) == 22 or len(task_id) != 32 or not all(c in "0123456789abcdef" for c in task_id)
    # AND an ARN of the older format (no cluster in it) is kept whole
    old = CLUSTER.split(":cluster/")[0] + ":task/" + task_id
    assert rank_key(old) == old and task_arn_of(old, CLUSTER) == old


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(RankView, stage=st.integers(0, len(STAGES) - 1), failed=st.booleans(),
                          user_stop=st.booleans(), recovery_stop=st.booleans()), max_size=12))
def test_a_jobs_lifecycle_reads_the_set_of_views_not_how_many_share_one(views: list[RankView]) -> None:
    # The job item counts its ranks by view and gives facts.lifecycle one view per kind: the same state.
    assert lifecycle(views) == lifecycle(dict.fromkeys(views))


@settings(max_examples=30, deadline=None)
@given(histories())
def test_after_every_event_a_jobs_summary_is_what_counting_its_ranks_again_gives(
        pair: tuple[list[Any], list[Any]]) -> None:
    _, mixed = pair
    # GIVEN a shuffled, duplicated history of jobs (ranks failing, stopped by recovery, restarted)
    state = ProjectionState()
    for raw in mixed:
        # WHEN each event is folded (the summary updated in a few steps)
        fold(state, ev(raw), CONFIG)
        # THEN every job's summary is the one counted from its ranks
        for (table, _), item in state.items.items():
            if table == JOB:
                assert projection._summarized(copy.deepcopy(item)) == item
