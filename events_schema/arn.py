"""The short form of an ARN that people read in tables, timelines and charts: the one helper for it."""

from __future__ import annotations


def short_arn(arn: str | None, *, width: int | None = None) -> str:
    """``arn:aws:ecs:...:container-instance/gpu/0f3c...`` -> ``0f3c...`` (the resource id after the last ``/``).

    Anything that is not an ARN (an instance id, a job id) comes back unchanged and None as ``-``;
    ``width`` cuts the result for narrow columns.
    """
    if not arn:
        return "-"
    text = arn.rsplit("/", 1)[-1] if arn.startswith("arn:") else arn
    return text[:width] if width is not None else text
