"""What each field means, for the event catalogue (docs/events.md), where the model gives no description.

A field's own ``Field(description=...)`` wins; then ``"Model.field"`` here; then the plain field name
(for names that mean the same thing in every model). A field with none of these fails the catalogue test,
so a new field cannot reach the stream undocumented.
"""

from __future__ import annotations

WRITTEN_BY = {
    "HealthCheckReported": "the DCGM health-check agent on the node (the fleet simulator locally)",
    "IncidentOpened": "the recovery consumer, when a GPU task failure starts an incident on its node",
    "IncidentClosed": "the recovery consumer, when the incident ends, whatever the outcome",
    "DecisionRecorded": "the recovery consumer, before every AWS call it makes",
    "ActionOutcome": "the recovery consumer, after every AWS call it made",
    "NodeStateChanged": "the recovery consumer, at every step of a node's repair",
    "JobStateChanged": "the recovery consumer, at every step of a job's recovery",
    "DeadlineExpired": "the recovery consumer, when a deadline it set passes",
    "NotificationSent": "the recovery consumer, with its publish to the SNS topic; `gpu-recovery notify test` "
    "(`message.test` true) to check the routing",
    "RecordParked": "any consumer, when it parks a record it cannot read",
    "GpuHealthSignal": "the node watcher (`gpu-recovery healthcheck --watch`) on a GPU node",
}

# Meanings shared by every model that has a field of this name.
COMMON = {
    "incident_id": "The incident this event belongs to (one incident per node fault).",
    "node_arn": "The ECS container instance ARN of the node.",
    "ec2_instance_id": "The node's EC2 instance id (`i-...`), or the managed instance id (`mi-...`) on ECS Anywhere.",
    "job_id": "The job: the ECS `group` of its tasks (or `startedBy`, by configuration).",
    "reason": "Why, in words, for people.",
    "idempotency_key": "Incident (or job) id + step: the same decision always has the same key, so the call "
    "it names happens once.",
    "action": "The AWS call: its type (e.g. `RebootInstances`, `StartTask`), target and parameters.",
    "clusterArn": "The cluster's ARN; our rules match it exactly.",
    "containerInstanceArn": "The container instance (node) ARN.",
    "ec2InstanceId": "The EC2 instance id, or the managed instance id on ECS Anywhere.",
    "version": "ECS's version of the entity: it only grows; projections use it to drop stale events.",
    "attributes": "Name/value attributes (we mirror a node's repair state into one).",
    "updatedAt": "When ECS last changed the entity.",
    "name": "Name.",
    "value": "Value.",
    "type": "Type.",
    "status": "Status.",
    "lastStatus": "The last status ECS observed.",
    "taskArn": "The task's ARN.",
}

NOTES = {
    # --- the envelope ------------------------------------------------------------------------------
    "Envelope.event_id": "Unique id; decisions have deterministic ids, so a re-decided step has the same id.",
    "Envelope.type": "The event type: one of the types below.",
    "Envelope.schema_version": "The version of `data`'s schema this record was written with. Readers upcast "
    "older versions to the current one.",
    "Envelope.time": "When it happened (UTC, ISO 8601). Decisions read time only from events.",
    "Envelope.source": "Who wrote it: `gpu-recovery/recovery`, `gpu-recovery/healthcheck`, ...",
    "Envelope.subject": "Who it is about; also gives the partition key.",
    "Envelope.causation_id": "The `event_id` (or AWS event `id`) of the event that caused this one.",
    "Envelope.data": "The payload, as described for each type below.",
    "Subject.node": "Container instance ARN, when the event is about a node.",
    "Subject.job": "Job id, when the event is about a job.",
    "Subject.task": "Task ARN, when the event is about one task.",
    "Subject.incident": "Incident id, when the event belongs to an incident.",
    # --- HealthCheckReported ------------------------------------------------------------------------
    "HealthCheckReported.check_task_arn": "The ECS task that ran the check.",
    "HealthCheckReported.level": "DCGM diagnostic level (`dcgmi diag -r`): 2 after a failure, 1 after a reboot.",
    "HealthCheckReported.verdict": "The agent's conclusion. A crashed or inconclusive check is never `healthy`.",
    "HealthCheckReported.recommended_action": "The repair the findings call for (from the XID catalog).",
    "HealthCheckReported.reason": "The findings, in words.",
    "HealthCheckReported.gpus": "One result per GPU.",
    "HealthCheckReported.xids": "XIDs found in the kernel log since the incident, with counts.",
    "HealthCheckReported.dcgm_version": "The DCGM version that ran the diagnostic.",
    "HealthCheckReported.expected_gpus": "GPUs the node should have (from its registration).",
    "HealthCheckReported.found_gpus": "GPUs the driver sees; fewer than expected is a hardware fault.",
    "HealthCheckReported.durations_s": "Seconds spent per step of the check (`diag`, `health`, ...).",
    "GpuResult.index": "GPU index on the node.",
    "GpuResult.uuid": "GPU UUID.",
    "GpuResult.status": "This GPU's result.",
    "GpuResult.errors": "DCGM's error messages for this GPU.",
    "XidCount.xid": "The XID number (see NVIDIA's XID catalog; our classes are in consumers/core/xid_catalog.py).",
    "XidCount.count": "How many times it was logged.",
    "Action.type": "The AWS call (`StopTask`, `StartTask`, `RebootInstances`, `UpdateContainerInstancesState`, ...).",
    "Action.target": "What it acts on (task ARN, instance id, container instance ARN, topic).",
    "Action.params": "The call's parameters, as sent.",
    # --- incidents ------------------------------------------------------------------------------
    "IncidentOpened.job_ids": "The jobs interrupted by the fault; later failures of the same fault join them.",
    "IncidentOpened.trigger_task_arn": "The failed task that opened the incident.",
    "IncidentClosed.outcome": "How it ended: recovered (repaired and restarted), application_fault (no "
    "repair, restarted), quarantined / replaced (node out of service, jobs restarted elsewhere), escalated "
    "(handed to people), failed.",
    # --- decisions and outcomes ---------------------------------------------------------------------
    "DecisionRecorded.step": "The step of the incident or job recovery (`stop_siblings`, `health_check`, "
    "`reboot`, `restart`, ...).",
    "ActionOutcome.status": "`succeeded`, `failed`, or `unknown` (the consumer stopped between claiming a "
    "non-repeatable call and recording its result).",
    "ActionOutcome.detail": "What AWS answered (ids of started tasks, ...).",
    "ActionOutcome.error": "The error code and message when it failed.",
    # --- state changes --------------------------------------------------------------------------
    "NodeStateChanged.state": "The node's repair state. HEALTHY after a reboot means the agent reconnected "
    "and a post-reboot check passed.",
    "JobStateChanged.state": "The job's state as recovery sees it.",
    "JobStateChanged.restart_count": "Automatic restarts of this job so far (the budget is configurable).",
    # --- time, notifications, parking --------------------------------------------------------------
    "DeadlineExpired.deadline_id": "Deterministic id of the deadline (incident or job + kind).",
    "DeadlineExpired.kind": "Which deadline: `health_check`, `reboot`, `restart`, `capacity`.",
    "DeadlineExpired.due_at": "When it was due.",
    "NotificationSent.kind": "What happened: `job_failed`, `node_quarantined`, `node_replaced`, "
    "`budget_exhausted`, `breaker_open`, `deadline_expired`, `escalation`, `waiting_capacity`, ...",
    "NotificationSent.subject": "The SNS subject line.",
    "NotificationSent.message": "The notice that was published: the `default` body of the SNS message, also "
    "rendered as email, SMS and chat (docs/notifications.md).",
    "RecordParked.consumer": "The consumer that parked it (`projector`, `recovery`).",
    "RecordParked.shard_id": "Where the record is: shard ...",
    "RecordParked.sequence_number": "... and sequence number (the raw bytes are in the parked-records table).",
    "RecordParked.reason": "Why it could not be read (`not_json`, `unknown_event`, `invalid` + detail).",
    "RecordParked.size_bytes": "Size of the record.",
    # --- AWS: the EventBridge envelope -----------------------------------------------------------
    "AwsEnvelope.version": "EventBridge envelope version (`0`).",
    "AwsEnvelope.id": "EventBridge's event id; a redelivered event keeps it.",
    "AwsEnvelope.source": "`aws.ecs`, `aws.health` or `aws.ec2`.",
    "AwsEnvelope.account": "The AWS account.",
    "AwsEnvelope.time": "When EventBridge received the event (UTC, second precision).",
    "AwsEnvelope.region": "The AWS region.",
    "AwsEnvelope.resources": "ARNs (or ids) of what the event is about: the task, container instance or EC2 "
    "instance; AWS Health may leave it out.",
    "AwsEnvelope.detail-type": "Which AWS event this is.",
    "AwsEnvelope.detail": "The event's own fields (below).",
    # --- AWS: task ----------------------------------------------------------------------------------
    "TaskDetail.containerInstanceArn": "The node it runs on; absent for a task never placed.",
    "TaskDetail.taskDefinitionArn": "Task definition with revision; families match exactly, never by prefix.",
    "TaskDetail.lastStatus": "PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING, "
    "DEPROVISIONING, STOPPED.",
    "TaskDetail.desiredStatus": "What ECS is driving the task to (RUNNING or STOPPED).",
    "TaskDetail.containers": "The task's containers; exit codes and GPU ids are read from them.",
    "TaskDetail.overrides": "Container overrides the task was started with (kept to restart it as launched).",
    "TaskDetail.group": "The task group; by default the job id.",
    "TaskDetail.startedBy": "Who started it; the job id when configured so.",
    "TaskDetail.stopCode": "Why it stopped: EssentialContainerExited, TaskFailedToStart, UserInitiated "
    "(not a failure), ServiceSchedulerInitiated, SpotInterruption, TerminationNotice.",
    "TaskDetail.stoppedReason": "ECS's words for the stop.",
    "TaskDetail.launchType": "EC2, EXTERNAL (ECS Anywhere) or FARGATE.",
    "TaskDetail.capacityProviderName": "The capacity provider it was placed with.",
    "TaskDetail.createdAt": "When the task was created.",
    "TaskDetail.startedAt": "When it started running.",
    "TaskDetail.stoppingAt": "When it began stopping.",
    "TaskDetail.stoppedAt": "When it stopped; the report times a failure by it.",
    "Container.containerArn": "The container's ARN.",
    "Container.name": "Container name in the task definition.",
    "Container.exitCode": "Exit code; non-zero on a STOPPED task (not a user stop) is a failure.",
    "Container.reason": "Why the container stopped (e.g. an NCCL or CUDA error).",
    "Container.gpuIds": "GPUs assigned to the container; a task with GPUs is a GPU task.",
    "TaskOverrides.containerOverrides": "One override per container.",
    "ContainerOverride.name": "Container name.",
    "ContainerOverride.command": "Command override.",
    "ContainerOverride.environment": "Environment overrides (name/value).",
    # --- AWS: container instance ----------------------------------------------------------------------
    "ContainerInstanceDetail.agentConnected": "Whether the ECS agent is connected; a disconnect and "
    "reconnect after a reboot request is the proof the node rebooted.",
    "ContainerInstanceDetail.status": "ACTIVE, DRAINING, INACTIVE, REGISTERING, DEREGISTERING, ...",
    "ContainerInstanceDetail.statusReason": "Why the status changed.",
    "ContainerInstanceDetail.registeredResources": "Resources the node registered; GPU ids are the `GPU` one.",
    "ContainerInstanceDetail.registeredAt": "When the node registered; a new registration after a reboot "
    "counts as back too.",
    "Resource.name": "Resource name (`CPU`, `MEMORY`, `GPU`, ...).",
    "Resource.type": "INTEGER, STRINGSET, ...",
    "Resource.integerValue": "Amount, for INTEGER resources.",
    "Resource.stringSetValue": "Values, for STRINGSET resources (GPU ids).",
    # --- AWS: container instance health ---------------------------------------------------------------
    "ContainerInstanceHealthDetail.overallStatus": "OK, IMPAIRED, INSUFFICIENT_DATA or INITIALIZING.",
    "ContainerInstanceHealthDetail.healthChecks": "The agent's checks (`ACCELERATED_COMPUTE`, "
    "`CONTAINER_RUNTIME`, `AGENT`, `EBS_CSI`, ...).",
    "HealthCheckResult.type": "Which check.",
    "HealthCheckResult.status": "OK, IMPAIRED, INSUFFICIENT_DATA, INITIALIZING.",
    "HealthCheckResult.lastUpdated": "When the check last ran.",
    "HealthCheckResult.lastStatusChange": "When its status last changed.",
    # --- AWS Health (EC2 scheduled changes) ---------------------------------------------------------
    "AwsHealthDetail.eventArn": "The AWS Health event; the same for its updates (upcoming, open, closed) and "
    "pages. Also its partition key.",
    "AwsHealthDetail.service": "The AWS service: `EC2` for the events we route.",
    "AwsHealthDetail.eventTypeCode": "What is scheduled: `AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED`, "
    "`AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED`, `AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED`, "
    "`AWS_EC2_INSTANCE_STOP_SCHEDULED`, ...",
    "AwsHealthDetail.eventTypeCategory": "`scheduledChange` for the events we route (also `issue`, "
    "`accountNotification`, `investigation`).",
    "AwsHealthDetail.eventScopeCode": "`ACCOUNT_SPECIFIC` or `PUBLIC`.",
    "AwsHealthDetail.communicationId": "This message; pages and backup deliveries of one event share its stem.",
    "AwsHealthDetail.startTime": "When the change starts (RFC 1123: `Thu, 27 Aug 2026 13:19:03 GMT`, as AWS "
    "Health writes it; `start_time` parses it).",
    "AwsHealthDetail.endTime": "When the window ends, if AWS Health gives one (same format; `end_time`).",
    "AwsHealthDetail.lastUpdatedTime": "When AWS Health last updated the event (same format).",
    "AwsHealthDetail.statusCode": "`upcoming`, `open` or `closed`.",
    "AwsHealthDetail.eventRegion": "The region the event is about (`region` is where it was delivered).",
    "AwsHealthDetail.eventDescription": "What AWS says, per language.",
    "AwsHealthDetail.affectedEntities": "The instances concerned (`instance_ids` reads their ids).",
    "AwsHealthDetail.affectedAccount": "The account concerned (differs from `account` in an organization view).",
    "AffectedEntity.entityValue": "An instance id (`i-...`) or an instance ARN.",
    "AffectedEntity.lastUpdatedTime": "When this entity's status last changed (RFC 1123).",
    "AffectedEntity.status": "`IMPAIRED`, `UNIMPAIRED`, `PENDING`, `RESOLVED` or `UNKNOWN`.",
    "HealthEventDescription.language": "Language code (`en_US`).",
    "HealthEventDescription.latestDescription": "The description, as on the AWS Health Dashboard.",
    # --- EC2 instance state change ------------------------------------------------------------------
    "Ec2InstanceStateDetail.instance_id": "The EC2 instance; also the partition key.",
    "Ec2InstanceStateDetail.state": "Its new state; the rule routes `stopping`, `stopped`, `shutting-down` and "
    "`terminated` only.",
}
