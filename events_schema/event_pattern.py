"""An evaluator of EventBridge event patterns (the subset our rules and tests use).

Semantics follow the EventBridge reference: every key of the pattern must match; a list of values
matches if any matches; an array in the event matches if any element matches; values match exactly
(strings are never prefixes unless ``prefix`` says so).
"""

from __future__ import annotations

import fnmatch
from typing import Any

_MISSING = object()


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    for key, expected in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not matches(expected, value):
                return False
        elif not _matches_any(expected, value):
            return False
    return True


def _matches_any(alternatives: list[Any], value: Any) -> bool:
    candidates = value if isinstance(value, list) else [value]
    return any(_matches_one(alt, candidate, value) for alt in alternatives for candidate in candidates)


def _matches_one(alternative: Any, candidate: Any, whole: Any) -> bool:
    if isinstance(alternative, dict):
        return _matches_filter(alternative, candidate, whole)
    if candidate is _MISSING:
        return False
    # JSON true is not 1 in EventBridge, so compare types as well.
    return type(alternative) is type(candidate) and bool(alternative == candidate)


def _matches_filter(filter_: dict[str, Any], candidate: Any, whole: Any) -> bool:
    ((op, arg),) = filter_.items()
    if op == "exists":
        return (whole is not _MISSING) is bool(arg)
    if candidate is _MISSING:
        return False
    if op == "prefix":
        return isinstance(candidate, str) and candidate.startswith(arg)
    if op == "suffix":
        return isinstance(candidate, str) and candidate.endswith(arg)
    if op == "wildcard":
        return isinstance(candidate, str) and fnmatch.fnmatchcase(candidate, arg.replace("[", "[[]"))
    if op == "anything-but":
        excluded = arg if isinstance(arg, list) else [arg]
        return candidate not in excluded
    if op == "equals-ignore-case":
        return isinstance(candidate, str) and candidate.lower() == str(arg).lower()
    raise ValueError(f"unsupported event pattern operator {op!r}")
