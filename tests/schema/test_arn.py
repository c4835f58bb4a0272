"""The one short-ARN helper that tables, timelines and charts share."""

from __future__ import annotations

import pytest

from events_schema.arn import short_arn

NODE = "arn:aws:ecs:us-east-1:123456789012:container-instance/gpu-cluster/0f3c1b9e8d2a4c6f9b7e5d3c1a2b4c6d"


@pytest.mark.parametrize(("arn", "width", "expected"), [
    (NODE, None, "0f3c1b9e8d2a4c6f9b7e5d3c1a2b4c6d"),  # the resource id after the last "/"
    (NODE, 12, "0f3c1b9e8d2a"),  # cut for a narrow column
    ("arn:aws:sns:us-east-1:123456789012:gpu-recovery", None, "arn:aws:sns:us-east-1:123456789012:gpu-recovery"),
    ("i-0abc123def4567890", None, "i-0abc123def4567890"),  # not an ARN: unchanged
    ("job/with/slashes", None, "job/with/slashes"),  # a slash alone does not make an ARN
    (None, None, "-"),
    ("", 12, "-"),
])
def test_short_arn(arn: str | None, width: int | None, expected: str) -> None:
    assert short_arn(arn, width=width) == expected
