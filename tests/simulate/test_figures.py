"""The simulation's figures come from what happened in the run: a hand-made run, figures worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics.simulation import Injected, RunFacts, SimulationRecorder, summarize

T0 = datetime(2026, 1, 1, tzinfo=UTC)
N1, N2 = "arn:aws:ecs:us-east-1:1:container-instance/c/n1", "arn:aws:ecs:us-east-1:1:container-instance/c/n2"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def facts() -> RunFacts:
    return RunFacts(engine="core", nodes=2, gpus_per_node=8, spares=0, days=1, seed=1, started=T0, fault_mix={},
                    settings={}, timing={})


def a_day_with_two_interruptions() -> SimulationRecorder:
    """A 2-rank job for a day. At 1 h a faulty GPU on n1: recovery sees the rank stop after 10 s, opens an
    incident at 20 s, checks at 60 s, quarantines at 300 s, the job runs again at 600 s (no person). At 2 h a
    software bug on n2: recovery pages a person, quarantines n2 (wrong: not its hardware), the job runs at
    1,200 s."""
    rec = SimulationRecorder({"j": 2}, T0)
    rec.task(T0, "j", "t1", "RUNNING")
    rec.task(T0, "j", "t2", "RUNNING")
    rec.inject(Injected(0, at(3600), "faulty GPU", "gpu", True, "XID 79", N1, "n1", "j"))
    rec.task(at(3610), "j", "t1", "STOPPED")
    rec.ours(at(3610), "JobStateChanged", {"job_id": "j", "state": "RECOVERING"})
    rec.ours(at(3620), "IncidentOpened", {"incident_id": "i1", "job_ids": ["j"], "node_arn": N1})
    rec.ours(at(3660), "NodeStateChanged", {"node_arn": N1, "state": "CHECKING", "incident_id": "i1"})
    rec.ours(at(3900), "NodeStateChanged", {"node_arn": N1, "state": "QUARANTINED", "incident_id": "i1"})
    rec.ours(at(3900), "IncidentClosed", {"incident_id": "i1", "outcome": "quarantined"})
    rec.ours(at(3900), "NotificationSent", {"kind": "node_quarantined", "severity": "action_needed",
                                            "message": {"incident_ids": ["i1"]}})  # a ticket, not for the job
    rec.task(at(4200), "j", "t3", "RUNNING")
    rec.ours(at(4200), "JobStateChanged", {"job_id": "j", "state": "RUNNING"})
    rec.inject(Injected(1, at(7200), "software bug", "software", False, "NCCL timeout", N2, "n2", "j"))
    rec.task(at(7205), "j", "t2", "STOPPED")
    rec.ours(at(7260), "NotificationSent", {"kind": "job_failed", "severity": "page", "job_id": "j"})
    rec.ours(at(7300), "NodeStateChanged", {"node_arn": N2, "state": "QUARANTINED"})
    rec.task(at(8400), "j", "t4", "RUNNING")
    return rec


def test_the_headline_counts_what_happened() -> None:
    report = summarize(a_day_with_two_interruptions(), facts(), at(86_400))
    # up 0-3,610 s, 4,200-7,205 s and 8,400-86,400 s: 84,615 s of 86,400
    assert report.headline == {"interruptions": 2, "recovered_automatically": 1, "escalated_to_humans": 1,
                               "open_at_end": 0, "effective_training_time": round(84_615 / 86_400, 6),
                               "wrong_irreversible_actions": 1, "node_repair_tickets": 2}
    assert report.out_of_service["false_nodes"][0]["node"] == "n2"


def test_time_lost_splits_at_the_milestones_recovery_recorded() -> None:
    first = summarize(a_day_with_two_interruptions(), facts(), at(86_400)).interruption_list[0]
    assert (first.outcome, first.lost_s) == ("recovered", 600)
    assert (first.detect_s, first.diagnose_s, first.repair_s, first.restart_s) == (10, 290, 0, 300)
    assert first.incidents == ["i1"]


def test_a_run_with_nothing_injected_is_all_training() -> None:
    rec = SimulationRecorder({"j": 1}, T0)
    rec.task(T0, "j", "t1", "RUNNING")
    report = summarize(rec, facts(), at(86_400))
    assert report.headline["effective_training_time"] == 1.0
    assert report.headline["interruptions"] == report.headline["wrong_irreversible_actions"] == 0


def test_an_interruption_on_a_node_running_no_rank_is_absorbed() -> None:
    rec = SimulationRecorder({"j": 1}, T0)
    rec.task(T0, "j", "t1", "RUNNING")
    rec.inject(Injected(0, at(100), "NIC", "network", False, "NCCL timeout", N2, "n2", None))
    report = summarize(rec, facts(), at(86_400))
    assert report.interruption_list[0].outcome == "absorbed"
    assert report.headline["interruptions"] == 0


def test_checkpoints_cost_the_work_since_the_last_one() -> None:
    # GIVEN a checkpoint every 1,000 s WHEN the job goes down after 3,610 s up THEN 610 s of work are lost
    rec = SimulationRecorder({"j": 1}, T0, checkpoint_s=1000)
    rec.task(T0, "j", "t1", "RUNNING")
    rec.task(at(3610), "j", "t1", "STOPPED")
    rec.task(at(4000), "j", "t2", "RUNNING")
    job = summarize(rec, facts(), at(10_000)).jobs[0]
    assert job.lost_work_s == 610
    assert job.ettr == round((3610 + 6000 - 610) / 10_000, 6)
