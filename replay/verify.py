"""Compare a rebuilt state with the live tables, item by item and field by field; and the rebuilt
recovery with the live recovery's, entry by entry of their ``recovery`` sections.

Ignored, because they legitimately differ between a live table and a fresh rebuild:
- ``rev``: the store's optimistic-concurrency counter (how many writes an item took, not its content);
- items the rebuild has and live lacks whose ``expires_at`` has passed: DynamoDB's TTL deleted them;
- items live has and the rebuild lacks whose ``expires_at`` has passed: the replay's retention let them go
  (``replay.retention``) and DynamoDB has not deleted them yet (it does so within days of expiry, not at once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from consumers.core.projection import KEY_ATTRIBUTE, TABLES, Item, ProjectionState

IGNORED_FIELDS = frozenset({"rev"})
TTL_FIELD = "expires_at"
MAX_KEPT_DIFFS = 1_000
_MISSING = "<absent>"

DiffKind = Literal["changed", "only_live", "only_replay"]


@dataclass(frozen=True)
class FieldDiff:
    path: str
    live: Any
    replay: Any


@dataclass(frozen=True)
class ItemDiff:
    table: str
    key: str
    kind: DiffKind
    fields: tuple[FieldDiff, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table, "key": self.key, "kind": self.kind,
            "fields": [{"path": f.path, "live": f.live, "replay": f.replay} for f in self.fields],
        }


@dataclass
class VerifyReport:
    compared: dict[str, int] = field(default_factory=dict)
    differing: int = 0
    expired_skipped: int = 0
    diffs: list[ItemDiff] = field(default_factory=list)  # the first MAX_KEPT_DIFFS

    @property
    def equal(self) -> bool:
        return self.differing == 0

    def add(self, diff: ItemDiff) -> None:
        self.differing += 1
        if len(self.diffs) < MAX_KEPT_DIFFS:
            self.diffs.append(diff)

    def as_json(self) -> dict[str, Any]:
        return {
            "equal": self.equal, "compared": self.compared, "differing": self.differing,
            "expired_skipped": self.expired_skipped, "ignored_fields": sorted(IGNORED_FIELDS),
            "diffs": [d.as_json() for d in self.diffs],
        }


def plain(value: Any) -> Any:
    """Both sides as JSON would carry them (tuples are lists, keys are strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def diff_values(live: Any, replay: Any, path: str = "") -> list[FieldDiff]:
    """Leaf-level differences: dicts are walked, anything else is compared whole."""
    if isinstance(live, dict) and isinstance(replay, dict):
        out: list[FieldDiff] = []
        for name in sorted(set(live) | set(replay)):
            if not path and name in IGNORED_FIELDS:
                continue
            where = f"{path}.{name}" if path else str(name)
            out.extend(diff_values(live.get(name, _MISSING), replay.get(name, _MISSING), where))
        return out
    return [] if live == replay else [FieldDiff(path or "(item)", live, replay)]


def verify(state: ProjectionState, scan: Callable[[str], Iterable[Item]], *, now_epoch: int) -> VerifyReport:
    """Scan each live table (paginated by ``scan``) against the rebuilt items."""
    report = VerifyReport()
    for table in TABLES:
        key_name = KEY_ATTRIBUTE[table]
        seen: set[str] = set()
        compared = 0
        for live in scan(table):
            key = str(live[key_name])
            seen.add(key)
            compared += 1
            rebuilt = state.items.get((table, key))
            if rebuilt is None:
                if _expired(live, now_epoch):
                    report.expired_skipped += 1
                else:
                    report.add(ItemDiff(table, key, "only_live"))
                continue
            fields = diff_values(plain(live), plain(rebuilt))
            if fields:
                report.add(ItemDiff(table, key, "changed", tuple(fields)))
        for (name, key), item in sorted(state.items.items()):
            if name != table or key in seen:
                continue
            compared += 1
            if _expired(item, now_epoch):
                report.expired_skipped += 1
            else:
                report.add(ItemDiff(table, key, "only_replay"))
        report.compared[table] = compared
    return report


def _expired(item: Item, now_epoch: int) -> bool:
    expires = item.get(TTL_FIELD)
    return isinstance(expires, int) and expires <= now_epoch


# --- recovery ---------------------------------------------------------------------------------------

RECOVERY_SECTIONS = {"incidents": "incident_id", "jobs": None, "nodes": None}  # list sections: their key field


def verify_recovery(report: VerifyReport, live: dict[str, Any], replay: dict[str, Any]) -> None:
    """Add the differences of two ``recovery`` sections (``summary``): each incident, node and job, by key
    (reported as ``recovery.incidents``, ``recovery.nodes``, ``recovery.jobs``)."""
    for section, key_field in RECOVERY_SECTIONS.items():
        table = f"recovery.{section}"
        live_entries = _entries(live.get(section), key_field)
        replay_entries = _entries(replay.get(section), key_field)
        for key in sorted(set(live_entries) | set(replay_entries)):
            if key not in replay_entries:
                report.add(ItemDiff(table, key, "only_live"))
            elif key not in live_entries:
                report.add(ItemDiff(table, key, "only_replay"))
            elif fields := diff_values(plain(live_entries[key]), plain(replay_entries[key])):
                report.add(ItemDiff(table, key, "changed", tuple(fields)))
        report.compared[table] = len(set(live_entries) | set(replay_entries))


def _entries(section: Any, key_field: str | None) -> dict[str, Any]:
    if key_field is None:
        return dict(section or {})
    return {str(entry[key_field]): entry for entry in section or []}
