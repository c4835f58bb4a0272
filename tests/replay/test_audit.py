"""The audit timeline of the incident story: rows, JSON and the self-contained HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumers.core.facts import IdentityRules
from consumers.core.projection import ProjectionConfig
from gpu_recovery.cli import main
from replay.audit import AuditSubject, Timeline, audit
from replay.sources import RawRecord
from tests.factories import task_arn
from tests.replay.histories import (
    ALPHA,
    BETA,
    INCIDENT,
    INSTANCE1,
    NODE1,
    OTHER_INCIDENT,
    incident_story,
    lines,
    write_jsonl,
)

CONFIG = ProjectionConfig(identity=IdentityRules(health_check_family="gpu-recovery-healthcheck"))


def timeline(kind: str, ident: str, *, duplicate: bool = False) -> Timeline:
    events = lines(incident_story())
    if duplicate:
        events = events + events[5:15]  # redelivered records
    records = [RawRecord(f"t:{i}", e) for i, e in enumerate(events)]
    return audit(lambda: records, AuditSubject(kind, ident), CONFIG)  # type: ignore[arg-type]


def whats(t: Timeline) -> list[str]:
    return [row.what for row in t.rows]


def test_incident_timeline_tells_the_story_in_order() -> None:
    # WHEN auditing the incident
    t = timeline("incident", INCIDENT)
    rows = [(row.category, row.what, row.why) for row in t.rows]
    # THEN it starts with what ECS said (the rank that died), then the decisions with their reasons,
    # the health check's finding, the actions and what came of them
    died = next(i for i, (_, what, _) in enumerate(rows) if "task00001 STOPPED on node node0001, exit 1" in what)
    categories = [c for c, _, _ in rows]
    assert set(categories[:died]) == {"ecs"}
    assert rows[died + 1][1].startswith(f"opened incident {INCIDENT} on node node0001 ({ALPHA})")
    found = ("health", "DCGM level 2 on node0001: hardware_fault, recommends reboot (XID 48 x2)",
             "XID 48: double-bit ECC error")
    reboot = ("decision", f"decided RebootInstances -> {INSTANCE1} (step reboot)", "XID 48 is reset-class: reboot")
    done = ("action", f"RebootInstances -> {INSTANCE1}: succeeded", "")
    assert rows.index(found) < rows.index(reboot) < rows.index(done)
    assert any(c == "ecs" and "agent disconnected" in w for c, w, _ in rows)  # the reboot, seen by ECS
    assert rows[-2][1] == f"incident {INCIDENT} closed: recovered"
    assert rows[-1][1].startswith("notified (incident_closed)")
    # AND nothing about the other node's incident or job
    assert not any(OTHER_INCIDENT in (row.incident_id or "") or "node0003" in row.what for row in t.rows)
    assert t.links.nodes == {NODE1} and ALPHA in t.links.jobs


def test_job_timeline_has_its_tasks_its_incident_and_not_the_other_job() -> None:
    t = timeline("job", ALPHA)
    text = "\n".join(whats(t))
    # THEN the job's ranks, their restart, the node's health check through the incident ...
    for needle in ("task00001 STOPPED", "task00002 STOPPED", "task00003 RUNNING", "task00004 RUNNING",
                   f"job {ALPHA} -> RESTARTING (restarts 1)", "hardware_fault", f"job {ALPHA} -> RUNNING"):
        assert needle in text
    # ... and nothing of job beta
    assert "task00009" not in text and BETA not in text
    assert t.links.incidents == {INCIDENT}


@pytest.mark.parametrize("ident", [NODE1, "node0001", INSTANCE1])
def test_node_timeline_by_arn_id_or_instance_id(ident: str) -> None:
    t = timeline("node", ident)
    text = "\n".join(whats(t))
    assert "instance ACTIVE, agent disconnected (version 2)" in text
    assert "node node0001 -> REBOOTING" in text and "node node0001 -> HEALTHY" in text
    assert "node0003" not in text
    assert [s["state"] for s in t.node_health()[NODE1]] == ["CHECKING", "REBOOTING", "VERIFYING", "HEALTHY"]


def test_a_redelivered_event_is_one_row() -> None:
    assert whats(timeline("incident", INCIDENT, duplicate=True)) == whats(timeline("incident", INCIDENT))


def test_audit_command_json_and_html(tmp_path: Path, capsys: Any) -> None:
    # GIVEN the story in a file
    history = write_jsonl(tmp_path / "h.jsonl", incident_story())
    page = tmp_path / "audit.html"
    # WHEN audited from the command line, as JSON and HTML
    code = main(["audit", "--incident", INCIDENT, "--source", f"file:{history}", "--json", "--html", str(page)])
    out = json.loads(capsys.readouterr().out)
    # THEN the JSON has the rows, the links and node health over time
    assert code == 0
    assert out["subject"] == {"kind": "incident", "id": INCIDENT}
    assert out["links"]["tasks"] == [task_arn(1), task_arn(2)]  # the trigger, and the sibling it stopped
    decision = next(r for r in out["rows"] if r["event_type"] == "DecisionRecorded" and "reboot" in r["what"])
    assert decision["detail"]["action"] == {"type": "RebootInstances", "target": INSTANCE1}
    assert [p["state"] for p in out["node_health"][NODE1]] == ["CHECKING", "REBOOTING", "VERIFYING", "HEALTHY"]
    assert [c["verdict"] for c in out["health_checks"][NODE1]] == ["hardware_fault", "healthy"]
    # AND the HTML page is self-contained, with the timeline and an SVG chart of node health
    html = page.read_text()
    assert "<svg" in html and "<rect" in html and "REBOOTING from" in html
    assert "XID 48 is reset-class: reboot" in html
    assert "<script" not in html and "https://" not in html and "<link" not in html


def test_audit_command_terminal_table(tmp_path: Path, capsys: Any) -> None:
    history = write_jsonl(tmp_path / "h.jsonl", incident_story())
    assert main(["audit", "--job", ALPHA, "--source", f"file:{history}"]) == 0
    out = capsys.readouterr().out
    assert f"audit of job {ALPHA}" in out and "health check found" in out and "came of it" in out


def test_a_job_id_that_json_escapes_is_still_found() -> None:
    # GIVEN a job whose id is not ASCII (json.dumps writes it as \u escapes)
    from tests.factories import task_event
    from tests.replay.histories import lines as to_lines

    records = [RawRecord("t:0", to_lines([task_event(1, group="job:réseau")])[0])]
    assert b"\\u00e9" in records[0].data
    # WHEN audited by its id as people type it
    t = audit(lambda: records, AuditSubject("job", "job:réseau"), CONFIG)
    # THEN its task is on the timeline
    assert [row.subject for row in t.rows] == ["job job:réseau"]


# --- people's requests ----------------------------------------------------------------------------

ALICE = "arn:aws:sts::123456789012:assumed-role/oncall/alice"


def with_requests() -> list[RawRecord]:
    """The story, plus what people asked afterwards: release node 1 (with a reason), cancel alpha's recovery
    (without one), and at the same instant as the release, the decision recovery took on it."""
    from events_schema.envelope import Subject
    from events_schema.events import DecisionRecorded, OperatorRequested
    from tests.factories import at, ours

    release = OperatorRequested(request="release_node", node_arn=NODE1, requested_by=ALICE,
                                reason="GPU 3 reseated, ticket OPS-7")
    cancel = OperatorRequested(request="cancel_job", job_id=ALPHA, requested_by="bob (OS user, not verified)")
    decided = DecisionRecorded(idempotency_key="inc-2/check", action=_check_command(), step="health_check",
                               reason="released by alice: check first", incident_id="inc-2")
    added = [ours(decided, when=at(500), subject=Subject(node=NODE1, incident="inc-2"), event_id="decided"),
             ours(release, when=at(500), subject=Subject(node=NODE1), event_id="release"),
             ours(cancel, when=at(510), subject=Subject(job=ALPHA), event_id="cancel")]
    events = [*incident_story(), *(e.model_dump(mode="json") for e in added)]
    return [RawRecord(f"t:{i}", e) for i, e in enumerate(lines(events))]


def _check_command() -> Any:
    from events_schema.commands import command_from_v1

    return command_from_v1({"type": "StartTask", "target": NODE1, "params": {"task_definition": "healthcheck"}})


def requests(t: Timeline) -> list[tuple[str, str, str]]:
    return [(row.subject, row.what, row.why) for row in t.rows if row.category == "request"]


@pytest.mark.parametrize("ident", [NODE1, "node0001", INSTANCE1])
def test_a_release_is_on_the_nodes_timeline_with_who_and_why(ident: str) -> None:
    # WHEN auditing node 1 (by ARN, id or EC2 instance id) after a person released it
    records = with_requests()
    t = audit(lambda: records, AuditSubject("node", ident), CONFIG)
    # THEN the request is a row of its own kind: who asked, for what, and why
    assert requests(t) == [("node node0001", f"{ALICE} asked to release node node0001 (back to service, through "
                            "a check)", "GPU 3 reseated, ticket OPS-7")]
    # AND it comes before what recovery decided on it at the same instant (though written to the stream after it)
    (asked,) = [row for row in t.rows if row.category == "request"]
    assert [row.category for row in t.rows if row.time == asked.time] == ["request", "decision"]
    # AND the job's cancel is not a node 1 event
    assert "cancel" not in "\n".join(whats(t))


def test_a_cancel_is_on_the_jobs_timeline_and_no_other() -> None:
    records = with_requests()
    t = audit(lambda: records, AuditSubject("job", ALPHA), CONFIG)
    assert (f"job {ALPHA}", f"bob (OS user, not verified) asked to cancel the recovery of job {ALPHA}",
            "(no reason given)") in requests(t)
    other = audit(lambda: records, AuditSubject("job", BETA), CONFIG)
    assert requests(other) == []


def test_requests_in_the_terminal_table_json_and_html(tmp_path: Path, capsys: Any) -> None:
    history = tmp_path / "h.jsonl"
    history.write_bytes(b"\n".join(r.data for r in with_requests()) + b"\n")
    page = tmp_path / "a.html"
    assert main(["audit", "--node", "node0001", "--source", f"file:{history}", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "people asked" in out and "ticket OPS-7" in out
    assert "people asked" in page.read_text()
    assert main(["audit", "--job", ALPHA, "--source", f"file:{history}", "--json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out)["rows"] if r["category"] == "request"]
    assert row["detail"] == {"request": "cancel_job", "requested_by": "bob (OS user, not verified)", "reason": "",
                             "node_arn": None, "job_id": ALPHA}
