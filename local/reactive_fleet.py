"""The fleet simulator's reactions: what ECS, EC2 and the node itself do in reply to our calls.

A StopTask stops the task (``UserInitiated``, as real ECS reports it); a StartTask of the health-check
family runs the DCGM agent's own verdict code on the node's simulated findings and writes its report;
a reboot drops the agent and brings it back; hourly agent reconnects and injected faults come from the
scenario. Time is the shared virtual clock; reactions are scheduled, not immediate.
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
from events_schema.aws import family_of
from healthcheck.findings import (
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
from local.scenario import FaultSpec, NodeHealth

DCGM_SECONDS = {1: 90, 2: 300, 3: 1800, 4: 3600}
REBOOT_SECONDS = 180
TASK_START_SECONDS = 20


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

    # --- injected by the scenario ---------------------------------------------------------------

    def inject_fault(self, fault: FaultSpec) -> None:
        node = self.node_by_name(fault.node)
        self.faults[node.arn] = fault
        self.health[node.arn] = NodeHealth(dcgm=fault.dcgm, xids=fault.xids)
        victims = [t for t in self.tasks.values() if t.node_arn == node.arn and t.last_status == "RUNNING"]
        jobs = {t.group for t in victims}
        reason = f"CUDA error: an illegal memory access was encountered (NVRM: Xid {fault.xids})"
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
        for task in [t for t in self.tasks.values() if t.group == group and t.last_status == "RUNNING"]:
            self.ecs.stop_task(cluster=self.cluster_name, task=task.arn, reason="stopped by a user")
            self.emit([self.advance_task(task, "STOPPED", exit_code=143, stop_code="UserInitiated",
                                         stopped_reason="Task stopped by user")])

    def stray_check_task(self, node: SimNode) -> None:
        """Someone ran the DCGM task by hand: it runs and stops on its own, not ours to act on."""
        arn = f"arn:aws:ecs:{self.region}:{self.account_id}:task/{self.cluster_name}/{uuid.uuid4().hex}"
        family = f"arn:aws:ecs:{self.region}:{self.account_id}:task-definition/{self.health_check_family}:1"
        task = self.track_task(arn, node, family, "family:" + self.health_check_family, "operator", {}, [], gpus=8)
        self.emit([self.advance_task(task, "RUNNING")])
        self.at(60, lambda: self.emit([self.advance_task(task, "STOPPED", exit_code=0,
                                                         stop_code="EssentialContainerExited")]), "stray check")

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
        node = self.nodes[params["containerInstances"][0]]
        arn = response["tasks"][0]["taskArn"]
        td_arn = str(response["tasks"][0].get("taskDefinitionArn") or params["taskDefinition"])
        tags = list(params.get("tags") or [])
        if family_of(td_arn) == self.health_check_family or params["taskDefinition"] == self.health_check_family:
            self._run_check(node, arn, td_arn, params, tags)
            return
        task = self.track_task(arn, node, td_arn, params.get("group"), params.get("startedBy"),
                               params.get("overrides") or {}, tags)
        self.emit([self.advance_task(task, "PROVISIONING")])
        self.at(TASK_START_SECONDS / 2, lambda: self.emit([self.advance_task(task, "PENDING")]), "pending")
        self.at(TASK_START_SECONDS, lambda: self.emit([self.advance_task(task, "RUNNING")]), "running")

    def _run_check(self, node: SimNode, arn: str, td_arn: str, params: dict[str, Any], tags: list[Any]) -> None:
        env = {e["name"]: e["value"] for o in params.get("overrides", {}).get("containerOverrides", [])
               for e in o.get("environment", [])}
        level = int(env.get("GPU_RECOVERY_CHECK_LEVEL", "2"))
        task = self.track_task(arn, node, td_arn, params.get("group"), params.get("startedBy"),
                               params.get("overrides") or {}, tags, gpus=len(node.gpu_ids))
        fault = self.faults.get(node.arn)
        self.emit([self.advance_task(task, "PROVISIONING")])
        if fault is not None and fault.check == "fails_to_start":
            self.at(15, lambda: self.emit([self.advance_task(
                task, "STOPPED", stop_code="TaskFailedToStart",
                stopped_reason="CannotPullContainerError: pull image manifest has been retried 5 time(s)")]),
                "check fails to start")
            return
        self.at(5, lambda: self.emit([self.advance_task(task, "RUNNING")]), "check running")
        self.at(5 + DCGM_SECONDS.get(level, 300), lambda: self._finish_check(node, task, level, env), "dcgm")

    def _finish_check(self, node: SimNode, task: SimTask, level: int, env: dict[str, str]) -> None:
        health = self.health.get(node.arn, NodeHealth())
        fault = self.faults.get(node.arn)
        findings = self._findings(node, health, level)
        verdict = decide(findings)
        if fault is None or fault.check != "exits_without_report":
            identity = Identity(node_arn=node.arn, instance_id=node.instance_id, check_task_arn=task.arn,
                                incident_id=env.get("GPU_RECOVERY_INCIDENT_ID"))
            event = build_event(findings, verdict, identity, durations_s={"diag": float(DCGM_SECONDS[level])},
                                now=self.clock.now(), event_id=str(uuid.uuid4()))
            self.reports.append([event])
        exit_code = verdict.exit_code if fault is None or fault.check != "exits_without_report" else 139
        self.at(1, lambda: self.emit([self.advance_task(task, "STOPPED", exit_code=exit_code,
                                                        stop_code="EssentialContainerExited")]), "check stops")

    def _findings(self, node: SimNode, health: NodeHealth, level: int) -> Findings:
        gpus = tuple(range(len(node.gpu_ids)))
        lost = 79 in health.xids
        if health.dcgm == "crash":
            diag: DiagReport | Inconclusive = Inconclusive("dcgmi", "dcgmi diag exited 139 (signal 11), no JSON")
        else:
            severity = SEVERITY_ISOLATE if any(x in (74, 79) for x in health.xids) else SEVERITY_RESET
            results = tuple(
                DiagResult(test="memory", category="Hardware", gpu=g,
                           status="fail" if health.dcgm == "fail" and g == 3 else "pass",
                           errors=(DiagError(1, severity, None, "GPU 3 memory test failed"),)
                           if health.dcgm == "fail" and g == 3 else ())
                for g in gpus
            )
            diag = DiagReport("4.2.3", "570.124.06", gpus, results)
        counts: dict[int, int] = {}
        for xid in health.xids:
            counts[xid] = counts.get(xid, 0) + 1
        nvml = NvmlReport("570.124.06", len(gpus), tuple(
            GpuNvml(index=g, uuid=node.gpu_ids[g], lost=lost and g == 3, nvlink_active=18) for g in gpus))
        return Findings(level=level, expected_gpus=len(gpus), diag=diag, health=HealthReport("pass"),
                        nvml=nvml, xids=XidReport(counts, "kernel log"))

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
        self.at(10, lambda: self.set_node(node, agent_connected=False), "reboot: agent disconnects")
        if fault is not None and fault.reboot == "never_returns":
            return
        after = fault.after_reboot if fault is not None else NodeHealth()

        def back() -> None:
            self.health[node.arn] = after
            self.set_node(node, agent_connected=True)

        self.at(REBOOT_SECONDS, back, "reboot: agent reconnects")

    def _on_TerminateInstanceInAutoScalingGroup(self, call: Call) -> None:
        node = next(n for n in self.nodes.values() if n.instance_id == call.params["InstanceId"])
        self.at(30, lambda: self.set_node(node, status="INACTIVE", agent_connected=False), "terminated")
        self.at(300, lambda: self.add_nodes(1, gpus=len(node.gpu_ids), prefix="gpu-replacement"), "replacement")
