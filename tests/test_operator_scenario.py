"""``gpu-recovery node release`` end to end: the shipped scenario that quarantines a node, then the command,
then the real consumers once more, on the same embedded AWS and virtual clock.

Scenario 01 quarantines gpu-node-2 (XID 79, DCGM fails). A person then runs the command naming the node by
its EC2 instance id; the projector and the recovery consumer read the request from the stream like any other
event. A release runs a check first: the node is back in service only if a technician fixed it (the
simulator's fault cleared) and the check passes; otherwise it stays quarantined.
"""

from __future__ import annotations

import pytest

import gpu_recovery.commands.operator as operator_command
from gpu_recovery.cli import main
from local.reactive_fleet import HEALTHY
from tests.scenarios.conftest import scenario_run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("repaired", [True, False], ids=["repaired", "still-faulty"])
def test_a_released_node_is_checked_and_returned_only_if_the_check_passes(
        repaired: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with scenario_run("01-xid79-quarantine") as (run, result):
        # GIVEN the scenario's end: gpu-node-2 quarantined, the job running again on the others
        assert result.ok, [e for e in result.expectations if not e["ok"]]
        node = run.fleet.node_by_name("gpu-node-2")
        if repaired:
            run.fleet.health[node.arn] = HEALTHY  # a technician replaced the GPU that fell off the bus
        before = len(run.calls.changes())
        # WHEN a person releases it by its instance id (the request dated by the scenario's clock)
        monkeypatch.setattr(operator_command, "utc_now", run.clock.now)
        code = main(["node", "release", node.instance_id, "--reason", "GPU 3 replaced",
                     "--endpoint-url", str(run.settings.endpoint_url)])
        assert code == 0, capsys.readouterr().err
        # AND the simulator and the consumers run on until nothing is left to do (the runner's own loop)
        run._loop()
        calls = run.calls.changes()[before:]
        # THEN recovery ran one health check on that node, and nothing else was started
        started = [c for c in calls if c.operation == "StartTask"]
        assert [(c.target, c.params["taskDefinition"]) for c in started] == [
            (node.arn, run.settings.health_check_task)]
        # AND the check's verdict decided: back to service (ACTIVE) only after a pass
        record = run.live_records()[("node", node.arn)]
        activated = [c for c in calls if c.operation == "UpdateContainerInstancesState"
                     and c.target == node.arn and c.params["status"] == "ACTIVE"]
        if repaired:
            assert record.plan.repair == "HEALTHY" and len(activated) == 1
        else:
            assert record.plan.repair == "QUARANTINED" and activated == []
        # AND the job the scenario restarted was left alone
        assert run.live_records()[("job", "job:llama-70b-run-42")].phase == "RUNNING"
