"""The fleet simulator's reactions: what ECS, EC2 and the node itself do in reply to our calls.

A StopTask stops the task (``UserInitiated``, with the caller's reason, as real ECS reports it); a
StartTask of the health-check family runs the DCGM agent's own verdict code on the node's simulated
findings and writes its report, signed with the secret recovery passed; a reboot drops the agent, stops
what ran on the node and brings it back with a new boot time; a fault stays until a reboot that fixes
it, so a rank started on a still-faulty node fails again. Hourly agent reconnects and injected faults
come from the scenario. Time is the shared virtual clock; reactions are scheduled, not immediate.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.core.clocktext import iso
from events_schema.aws import family_of
from events_schema.envelope import Envelope, Subject, make_envelope
from events_schema.events import GpuHealthSignal, HealthCheckReported, OperatorRequested
from events_schema.proof import report_proof
from healthcheck.coverage import expected_tests
from healthcheck.findings import (
    SEVERITY_CONFIG,
    SEVERITY_ISOLATE,
    SEVERITY_RESET,
    DiagError,
    DiagReport,
    DiagResult,
    Findings,
    GpuNvml,
    HealthReport,
    Inconclusive,
    NvmlReport,
    XidReport,
)
from healthcheck.identity import Identity
from healthcheck.report import build_event
from healthcheck.verdict import decide
from local.call_log import Call
from local.fleet import FleetSimulator, SimNode, SimTask
from local.scenario import EventSpec, FaultSpec, NodeHealth

DCGM_SECONDS = {1: 90, 2: 300, 3: 1800, 4: 3600}
REBOOT_SECONDS = 180
TASK_START_SECONDS = 20
FAULT_AGAIN_SECONDS = 60  # a rank on a still-faulty node fails this long after it starts
HEALTHY = NodeHealth()


@dataclass(order=True)
class _Scheduled:
    due: datetime
    seq: int
    action: Callable[[], object] = field(compare=False)
    label: str = field(compare=False, default="")


class ReactiveFleet(FleetSimulator):
    def __init__(self, *args: Any, reports: KinesisStreamWriter, health_check_family: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reports = reports
        self.health_check_family = health_check_family
        self.health: dict[str, NodeHealth] = {}
        self.faults: dict[str, FaultSpec] = {}
        self.family_gpus: dict[str, int] = {health_check_family: 0}
        self.checks: dict[str, tuple[str, str, str]] = {}  # check task -> (node, incident, check key)
        self._queue: list[_Scheduled] = []
        self._seq = itertools.count()

    # --- the scheduler --------------------------------------------------------------------------

    def at(self, seconds: float, action: Callable[[], object], label: str = "") -> None:
        due = self.clock.now() + timedelta(seconds=seconds)
        heapq.heappush(self._queue, _Scheduled(due, next(self._seq), action, label))

    def next_due(self) -> datetime | None:
        return self._queue[0].due if self._queue else None

    def run_due(self) -> int:
        ran = 0
        while self._queue and self._queue[0].due <= self.clock.now():
            heapq.heappop(self._queue).action()
            ran += 1
        return ran

    def register_training_family(self, family: str = "llm-train", gpus: int = 8) -> str:
        self.family_gpus[family] = gpus
        return super().register_training_family(family, gpus)

    def free_gpus(self, container_instance: str) -> int | None:
        node = self.nodes.get(container_instance)
        return node.gpus_free if node else None

    def gpus_of(self, family: str) -> int:
        return self.family_gpus.get(family, 0)

    # --- injected by the scenario ---------------------------------------------------------------

    def inject_fault(self, fault: FaultSpec) -> None:
        node = self.node_by_name(fault.node)
        self.faults[node.arn] = fault
        self.health[node.arn] = NodeHealth(dcgm=fault.dcgm, xids=fault.xids)
        if not fault.silent:
            self._fail_ranks_on(node, fault.xids, fault.evidence)

    def _fail_ranks_on(self, node: SimNode, xids: list[int], evidence: bool) -> None:
        victims = [t for t in self.tasks.values() if t.node_arn == node.arn and t.last_status == "RUNNING"
                   and family_of(t.task_definition_arn) != self.health_check_family]
        jobs = {t.group for t in victims}
        reason = (f"CUDA error: an illegal memory access was encountered (NVRM: Xid {xids})" if evidence and xids
                  else "CUDA error: unspecified launch failure")
        self.emit([self.advance_task(t, "STOPPED", exit_code=1, container_reason=reason,
                                     stop_code="EssentialContainerExited",
                                     stopped_reason="Essential container in task exited") for t in victims])
        # The other ranks die of the collective timeout within a second, after the faulty one.
        for offset, task in enumerate(t for t in self.tasks.values()
                                      if t.group in jobs and t.last_status == "RUNNING" and t.node_arn != node.arn):
            self.at(0.3 + 0.1 * offset, self._collective_timeout(task), "collective timeout")

    def _collective_timeout(self, task: SimTask) -> Callable[[], None]:
        def run() -> None:
            if task.last_status == "RUNNING":
                self.emit([self.advance_task(task, "STOPPED", exit_code=1, stop_code="EssentialContainerExited",
                                             container_reason="NCCL watchdog: collective operation timed out",
                                             stopped_reason="Essential container in task exited")])
        return run

    def agent_reconnect(self, node: SimNode) -> None:
        """The hourly reconnect of the ECS agent: disconnected for a moment, nothing wrong."""
        self.set_node(node, agent_connected=False)
        self.at(5, lambda: self.set_node(node, agent_connected=True), "agent reconnect")

    def user_stop(self, group: str) -> None:
        for task in [t for t in self.tasks.values() if t.group == group and t.last_status != "STOPPED"]:
            self.ecs.stop_task(cluster=self.cluster_name, task=task.arn, reason="stopped by a user")
            self.emit([self.advance_task(task, "STOPPED", exit_code=143, stop_code="UserInitiated",
                                         stopped_reason="Task stopped by user")])

    def stray_check_task(self, node: SimNode) -> None:
        """Someone ran the DCGM task by hand: it runs and stops on its own, not ours to act on."""
        arn = f"arn:aws:ecs:{self.region}:{self.account_id}:task/{self.cluster_name}/{uuid.uuid4().hex}"
        family = f"arn:aws:ecs:{self.region}:{self.account_id}:task-definition/{self.health_check_family}:1"
        task = self.track_task(arn, node, family, "family:" + self.health_check_family, "operator", {}, [], gpus=0)
        self.emit([self.advance_task(task, "RUNNING")])
        self.at(60, lambda: self.emit([self.advance_task(task, "STOPPED", exit_code=0,
                                                         stop_code="EssentialContainerExited")]), "stray check")

    def scripted(self, event: EventSpec) -> None:
        """The scenario's other events: people, AWS, forgeries."""
        node = self.node_by_name(event.node) if event.node else None
        if event.type in ("operator_release", "operator_attribute") and node is not None and event.fixed:
            self.faults.pop(node.arn, None)  # the operator repaired the node before returning it
            self.health[node.arn] = HEALTHY
        if event.type == "operator_release" and node is not None:
            self._ours(OperatorRequested(request="release_node", node_arn=node.arn, requested_by="scenario"),
                       Subject(node=node.arn))
        elif event.type == "job_cancel" and event.job:
            self._ours(OperatorRequested(request="cancel_job", job_id=event.job, requested_by="scenario"),
                       Subject(job=event.job))
        elif event.type == "operator_attribute" and node is not None:
            node.attributes["gpu-recovery.state"] = "HEALTHY"
            self.ecs.update_container_instances_state(cluster=self.cluster_name, containerInstances=[node.arn],
                                                      status="ACTIVE")
            self.set_node(node, status="ACTIVE")
        elif event.type == "instance_health" and node is not None:
            self.emit([self.health_event(node, event.check, event.status)])
        elif event.type == "gpu_signal" and node is not None:
            self._ours(GpuHealthSignal(node_arn=node.arn, ec2_instance_id=node.instance_id, kind=event.kind,
                                       xids=event.xids, detail=event.reason or f"XID {event.xids}"),
                       Subject(node=node.arn))
        elif event.type == "forged_report" and node is not None:
            self._forged_report(node, event.verdict)
        elif event.type == "aws_health" and node is not None:
            self._scheduled_change(node, event)
        elif event.type == "instance_state" and node is not None:
            self.instance_stops(node, event.state)

    def _scheduled_change(self, node: SimNode, event: EventSpec) -> None:
        """AWS announces a change for the window [start, end] (seconds from now), then carries it out."""
        start = self.clock.now() + timedelta(seconds=event.start if event.start is not None else 86_400)
        end = self.clock.now() + timedelta(seconds=event.end) if event.end is not None else None
        self.emit([self.scheduled_change_event(node, event.code, start, end)])
        delay = (start - self.clock.now()).total_seconds()
        if "REBOOT" in event.code:
            self.at(delay, lambda: self._reboot(node), "scheduled reboot")
        else:
            self.at(delay, lambda: self.instance_stops(node, "stopped"), "scheduled stop")

    def instance_stops(self, node: SimNode, state: str) -> None:
        """The instance stops or terminates outside recovery: its tasks stop, its agent drops."""
        if node.status == "INACTIVE":
            return  # already gone (replaced ahead of the window)
        victims = [t for t in self.tasks.values() if t.node_arn == node.arn and t.last_status != "STOPPED"]
        self.emit([self.instance_state_event(node, "stopping" if state == "stopped" else "shutting-down")])
        self.emit([self.advance_task(t, "STOPPED", stop_code="TerminationNotice",
                                     stopped_reason=f"Host EC2 (instance {node.instance_id}) {state}")
                   for t in victims])
        self.emit([self.instance_state_event(node, state)])
        self.set_node(node, agent_connected=False, status="INACTIVE" if state == "terminated" else node.status)

    def _ours(self, data: Any, subject: Subject) -> None:
        self.reports.append([make_envelope(data, event_id=str(uuid.uuid4()), time=self.clock.now(),
                                           source="gpu-recovery/scenario", subject=subject)])

    def _forged_report(self, node: SimNode, verdict: str) -> None:
        """Someone who can read the stream copies the live check's ids into a report it cannot sign."""
        check = next(((arn, inc, key) for arn, (n, inc, key) in reversed(self.checks.items()) if n == node.arn),
                     None)
        data = HealthCheckReported(node_arn=node.arn, check_task_arn=check[0] if check else None,
                                   incident_id=check[1] if check else None, check_key=check[2] if check else None,
                                   level=2, verdict=verdict, recommended_action="quarantine",
                                   reason="forged", proof="0" * 64)
        self._ours(data, Subject(node=node.arn))

    # --- reactions to our calls -----------------------------------------------------------------

    def react(self, call: Call) -> None:
        if not call.ok:
            return
        handler = getattr(self, f"_on_{call.operation}", None)
        if handler is not None:
            handler(call)

    def _on_StopTask(self, call: Call) -> None:
        task = self.tasks.get(str(call.params["task"]))
        if task is not None and task.last_status != "STOPPED":
            self.at(2, lambda: self._stop_by_api(task, str(call.params.get("reason", ""))), "stop task")

    def _stop_by_api(self, task: SimTask, reason: str) -> None:
        if task.last_status != "STOPPED":
            self.emit([self.advance_task(task, "STOPPED", exit_code=137, stop_code="UserInitiated",
                                         stopped_reason=reason or "Task stopped by user")])

    def _on_StartTask(self, call: Call) -> None:
        params, response = call.params, call.response
        if not response.get("tasks"):
            return  # ECS placed nothing
        node = self.nodes[params["containerInstances"][0]]
        arn = response["tasks"][0]["taskArn"]
        td_arn = str(response["tasks"][0].get("taskDefinitionArn") or params["taskDefinition"])
        tags = list(params.get("tags") or [])
        if family_of(td_arn) == self.health_check_family or params["taskDefinition"] == self.health_check_family:
            self._run_check(node, arn, td_arn, params, tags)
            return
        task = self.track_task(arn, node, td_arn, params.get("group"), params.get("startedBy"),
                               params.get("overrides") or {}, tags, gpus=self.gpus_of(family_of(td_arn)))
        self.emit([self.advance_task(task, "PROVISIONING")])
        self.at(TASK_START_SECONDS / 2, lambda: self._advance_if_live(task, "PENDING"), "pending")
        self.at(TASK_START_SECONDS, lambda: self._advance_if_live(task, "RUNNING"), "running")
        if self._faulty(node):
            # The fault is still there: the rank dies on it soon after it starts.
            self.at(TASK_START_SECONDS + FAULT_AGAIN_SECONDS, lambda: self._fault_again(node), "fault again")

    def _advance_if_live(self, task: SimTask, status: str) -> None:
        if task.last_status != "STOPPED":
            self.emit([self.advance_task(task, status)])

    def _faulty(self, node: SimNode) -> bool:
        health = self.health.get(node.arn, HEALTHY)
        return health.dcgm == "fail" or any(x not in (13, 31, 43, 45, 68, 94) for x in health.xids)

    def _fault_again(self, node: SimNode) -> None:
        if self._faulty(node):
            health = self.health[node.arn]
            self._fail_ranks_on(node, health.xids, evidence=True)

    def _run_check(self, node: SimNode, arn: str, td_arn: str, params: dict[str, Any], tags: list[Any]) -> None:
        env = {e["name"]: e["value"] for o in params.get("overrides", {}).get("containerOverrides", [])
               for e in o.get("environment", [])}
        level = int(env.get("GPU_RECOVERY_CHECK_LEVEL", "2"))
        task = self.track_task(arn, node, td_arn, params.get("group"), params.get("startedBy"),
                               params.get("overrides") or {}, tags, gpus=0)
        self.checks[arn] = (node.arn, env.get("GPU_RECOVERY_INCIDENT_ID", ""), env.get("GPU_RECOVERY_CHECK_KEY", ""))
        fault = self.faults.get(node.arn)
        self.emit([self.advance_task(task, "PROVISIONING")])
        if fault is not None and fault.check == "fails_to_start":
            self.at(15, lambda: self.emit([self.advance_task(
                task, "STOPPED", stop_code="TaskFailedToStart",
                stopped_reason="CannotPullContainerError: pull image manifest has been retried 5 time(s)")]),
                "check fails to start")
            return
        self.at(5, lambda: self._advance_if_live(task, "RUNNING"), "check running")
        self.at(5 + DCGM_SECONDS.get(level, 300), lambda: self._finish_check(node, task, level, env), "dcgm")

    def _finish_check(self, node: SimNode, task: SimTask, level: int, env: dict[str, str]) -> None:
        if task.last_status == "STOPPED":
            return  # killed meanwhile (the node rebooted under it)
        health = self.health.get(node.arn, HEALTHY)
        fault = self.faults.get(node.arn)
        findings = self._findings(node, health, level)
        verdict = decide(findings)
        silent = fault is not None and fault.check == "exits_without_report"
        if not silent:
            self.reports.append([self._report(node, task, findings, verdict, level, env)])
        exit_code = 139 if silent else verdict.exit_code
        self.at(1, lambda: self._advance_if_live_stop(task, exit_code), "check stops")

    def _advance_if_live_stop(self, task: SimTask, exit_code: int) -> None:
        if task.last_status != "STOPPED":
            self.emit([self.advance_task(task, "STOPPED", exit_code=exit_code, stop_code="EssentialContainerExited")])

    def _report(self, node: SimNode, task: SimTask, findings: Findings, verdict: Any, level: int,
                env: dict[str, str]) -> Envelope:
        identity = Identity(node_arn=node.arn, instance_id=node.instance_id, check_task_arn=task.arn,
                            incident_id=env.get("GPU_RECOVERY_INCIDENT_ID"))
        event = build_event(findings, verdict, identity, durations_s={"diag": float(DCGM_SECONDS[level])},
                            now=self.clock.now(), event_id=str(uuid.uuid4()))
        data = {k: v for k, v in event.data.items() if k != "proof"}
        data.update(check_key=env.get("GPU_RECOVERY_CHECK_KEY"), boot_time=node.booted_at)
        secret = env.get("GPU_RECOVERY_CHECK_SECRET")
        if secret:
            data["proof"] = report_proof(secret, data)
        return event.model_copy(update={"data": data})

    def _findings(self, node: SimNode, health: NodeHealth, level: int) -> Findings:
        gpus = tuple(range(len(node.gpu_ids)))
        lost = 79 in health.xids
        if health.dcgm == "crash":
            diag: DiagReport | Inconclusive = Inconclusive("dcgmi", "dcgmi diag exited 139 (signal 11), no JSON")
        else:
            tests = expected_tests(level)
            failing = "memory" if "memory" in tests else "software"
            diag = DiagReport("4.2.3", "570.124.06", gpus,
                              tuple(self._result(health, test, g, failing) for test in tests for g in gpus))
        counts: dict[int, int] = {}
        for xid in health.xids:
            counts[xid] = counts.get(xid, 0) + 1
        nvml = NvmlReport("570.124.06", len(gpus), tuple(
            GpuNvml(index=g, uuid=node.gpu_ids[g], lost=lost and g == 3, nvlink_active=18) for g in gpus))
        return Findings(level=level, expected_gpus=len(gpus), diag=diag, health=HealthReport("pass"),
                        nvml=nvml, xids=XidReport(counts, "kernel log"))

    def _result(self, health: NodeHealth, test: str, gpu: int, failing: str) -> DiagResult:
        """Every test of the level runs on every GPU; the fault shows where it would."""
        if health.dcgm == "config" and gpu == 0 and test == "software":
            return DiagResult(test=test, category="Deployment", gpu=gpu, status="fail", errors=(
                DiagError(29, SEVERITY_CONFIG, None, "Persistence mode for GPU 0 is disabled. Enable it with "
                          "nvidia-smi -pm 1"),))
        if health.dcgm == "fail" and gpu == 3 and test == failing:
            severity = SEVERITY_ISOLATE if any(x in (74, 79) for x in health.xids) else SEVERITY_RESET
            return DiagResult(test=test, category="Hardware", gpu=gpu, status="fail",
                              errors=(DiagError(1, severity, None, f"GPU 3 {test} test failed"),))
        return DiagResult(test=test, category="Hardware", gpu=gpu, status="pass")

    def _on_UpdateContainerInstancesState(self, call: Call) -> None:
        node = self.nodes[call.params["containerInstances"][0]]
        self.at(1, lambda: self.set_node(node, status=call.params["status"]), "instance state")

    def _on_PutAttributes(self, call: Call) -> None:
        for attribute in call.params["attributes"]:
            node = self.nodes.get(str(attribute.get("targetId")))
            if node is not None:
                node.attributes[attribute["name"]] = attribute.get("value", "")
                self.set_node(node)

    def _on_RebootInstances(self, call: Call) -> None:
        for instance_id in call.params["InstanceIds"]:
            self._reboot(next(n for n in self.nodes.values() if n.instance_id == instance_id))

    def _on_SendCommand(self, call: Call) -> None:
        for instance_id in call.params["InstanceIds"]:
            self._reboot(next(n for n in self.nodes.values() if n.instance_id == instance_id))

    def _reboot(self, node: SimNode) -> None:
        fault = self.faults.get(node.arn)
        if fault is not None and fault.reboot == "lost":
            self.faults[node.arn] = fault.model_copy(update={"reboot": "ok"})  # only the first request is lost
            return
        delay = 600.0 if fault is not None and fault.reboot == "late" else 10.0
        self.at(delay, lambda: self._going_down(node), "reboot: agent disconnects")
        if fault is not None and fault.reboot == "never_returns":
            return
        after = fault.after_reboot if fault is not None else HEALTHY

        def back() -> None:
            self.health[node.arn] = after
            node.booted_at = iso(self.clock.now() - timedelta(seconds=30))
            self.set_node(node, agent_connected=True)

        self.at(delay + REBOOT_SECONDS, back, "reboot: agent reconnects")

    def _going_down(self, node: SimNode) -> None:
        """What ran on the node dies with it; the agent drops."""
        victims = [t for t in self.tasks.values() if t.node_arn == node.arn and t.last_status != "STOPPED"]
        self.emit([self.advance_task(t, "STOPPED", exit_code=137, stop_code="EssentialContainerExited",
                                     stopped_reason=f"Host EC2 (instance {node.instance_id}) rebooted")
                   for t in victims])
        self.set_node(node, agent_connected=False)

    def _on_TerminateInstanceInAutoScalingGroup(self, call: Call) -> None:
        node = next(n for n in self.nodes.values() if n.instance_id == call.params["InstanceId"])
        self.at(30, lambda: self.set_node(node, status="INACTIVE", agent_connected=False), "terminated")
        self.at(300, lambda: self.add_nodes(1, gpus=len(node.gpu_ids), prefix="gpu-replacement"), "replacement")
