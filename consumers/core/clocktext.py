"""Times as sortable text: every order comparison in the core uses these strings."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


# EventBridge times have second resolution, and a task's createdAt and startedAt come back in each of
# its events: most calls repeat a recent moment (3.3 -> 0.4 us per event on the fleet stream).
@lru_cache(maxsize=4096)
def iso(moment: datetime) -> str:
    """A fixed-width UTC timestamp: lexical order is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # isoformat is a third cheaper than strftime (the fold calls this for every event); "+00:00" -> "Z".
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    if len(text) == 27 and text[10] == "T" and text[-1] == "Z":
        # Our own fixed-width form: fromisoformat is ~50x cheaper than strptime.
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # strptime below raises the usual error
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def epoch_seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())
