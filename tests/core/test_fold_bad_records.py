"""The recovery fold as replay runs it over a stream anyone may write to: a record it cannot take changes nothing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consumers.core.recovery.record import fold_event
from consumers.core.recovery.view import View
from events_schema.envelope import OurEvent, Subject
from events_schema.events import RecoveryRecorded
from tests.core.recovery_world import config
from tests.factories import at, ours


@pytest.mark.parametrize("kind", ["job", "node", "incident"])
def test_a_recovery_recorded_that_is_no_valid_record_leaves_nothing_behind(kind: str) -> None:
    # GIVEN a RecoveryRecorded whose record is not a plan (forged, or from a future version gone wrong)
    data = RecoveryRecorded(kind=kind, key="x", version=5, record={"phase": "NOPE", "repair": 7, "generation": "z"})
    event = OurEvent(ours(data, when=at(1), subject=Subject()), data)
    view = View(complete=True)
    # WHEN folded THEN the fold refuses it, and no empty record of that key is left in the view
    with pytest.raises(ValidationError):
        fold_event(view, event, config().identity)
    assert view.records() == {}
