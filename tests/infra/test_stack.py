"""The default stack, unit by unit: what is deployed and how it is secured.

One synthesis (session fixture) serves every test here; assertions use has_resource_properties, Match
and Capture, and find resources by type and properties, never by a hard-coded logical id.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Capture, Match

from consumers.adapters.table_specs import TABLE_SPECS, KclTables
from consumers.core.errors import ConfigError
from consumers.runtime.kcl_config import DaemonConfig
from consumers.runtime.kcl_properties import property_items
from events_schema.rules import ingest_rules
from gpu_recovery.settings import load_settings
from gpu_recovery.wiring import PROJECTOR_APP, RECOVERY_APP
from infra.archive import ARCHIVE_PREFIX, ERROR_PREFIX
from infra.encryption import LOGS_KEY_ACTIONS
from infra.nag import flatten_reference
from infra.permissions import METRIC_NAMESPACE, NODE_TAG_KEY
from infra.tables import DEPLOYED
from tests.infra.support import REQUIRED_CONTEXT, Synth, as_list, by_sid, role_statements, synthesize

DEFAULTS = load_settings()
IN_REGION = "arn:<AWS::Partition>"
_flat = flatten_reference


def key_ref(synth: Synth) -> dict[str, Any]:
    return {"Fn::GetAtt": [synth.logical_id(synth.stack.stream.encryption_key), "Arn"]}


def container_env(definition: dict[str, Any]) -> dict[str, Any]:
    (container,) = definition["Properties"]["ContainerDefinitions"]
    return {item["Name"]: item["Value"] for item in container["Environment"]}


# --- the stream -----------------------------------------------------------------------------------


def test_stream_is_on_demand_encrypted_with_our_key_and_kept_a_week(default_synth: Synth) -> None:
    # GIVEN the default stack
    key = Capture()
    # THEN the one stream is on-demand, KMS-encrypted with the stack's key, retained
    default_synth.template.resource_count_is("AWS::Kinesis::Stream", 1)
    default_synth.template.has_resource_properties("AWS::Kinesis::Stream", {
        "Name": DEFAULTS.stream_name,
        "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
        "RetentionPeriodHours": 168,
        "StreamEncryption": {"EncryptionType": "KMS", "KeyId": key},
        "ShardCount": Match.absent(),
    })
    assert key.as_object() == key_ref(default_synth)
    default_synth.template.has_resource("AWS::Kinesis::Stream", {"DeletionPolicy": "Retain"})


def test_the_key_rotates_and_lets_services_use_it_only_for_this_account(default_synth: Synth) -> None:
    # GIVEN the key policy
    default_synth.template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    (key,) = default_synth.resources("AWS::KMS::Key").values()
    statements = by_sid(key["Properties"]["KeyPolicy"]["Statement"])
    account = {"Ref": "AWS::AccountId"}
    # THEN EventBridge (dead-letter queue) may encrypt with it on behalf of this account only
    assert statements["EventBridgeToEncryptedDeadLetterQueue"]["Principal"] == {"Service": "events.amazonaws.com"}
    assert statements["EventBridgeToEncryptedDeadLetterQueue"]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": account}
    }
    # AND CloudWatch (alarms to the topic) only for this account's alarms
    alarms = statements["AlarmsPublishToEncryptedTopic"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Condition"]["StringEquals"] == {"aws:SourceAccount": account}
    assert _flat(alarms["Condition"]["ArnLike"]["aws:SourceArn"]) == (
        f"{IN_REGION}:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:*")
    # AND CloudWatch Logs of this region only for this account's log groups (the encryption context)
    logs = statements["LogsEncryptOurLogGroups"]
    assert _flat(logs["Principal"]["Service"]) == "logs.<AWS::Region>.amazonaws.com"
    assert logs["Action"] == LOGS_KEY_ACTIONS
    assert _flat(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]) == (
        f"{IN_REGION}:logs:<AWS::Region>:<AWS::AccountId>:log-group:*")
    # AND every statement for a service principal carries a condition
    for statement in statements.values():
        if "Service" in statement["Principal"]:
            assert statement.get("Condition"), statement


# --- ingest -----------------------------------------------------------------------------------------


def test_rules_are_exactly_the_rules_module_with_the_exact_cluster_arn(default_synth: Synth) -> None:
    # GIVEN the rules module evaluated for the stack's cluster ARN
    expected = ingest_rules(default_synth.stack.cluster_arn)
    rules = default_synth.resources("AWS::Events::Rule")
    # THEN there is one deployed rule per module rule, with the module's pattern, unchanged
    assert len(rules) == len(expected)
    deployed = {rule["Properties"]["Name"]: rule["Properties"] for rule in rules.values()}
    for rule in expected:
        properties = deployed[f"gpu-recovery-{rule.name}"]
        assert properties["EventPattern"] == default_synth.resolve(rule.event_pattern)
        assert properties["Description"] == rule.description
    # AND the AWS Health and EC2 rules match this very account (and region), as the cluster is matched
    # by its full ARN in this account and region, never a prefix
    assert deployed["gpu-recovery-ec2-scheduled-change"]["EventPattern"]["account"] == [{"Ref": "AWS::AccountId"}]
    assert deployed["gpu-recovery-ec2-instance-stopped"]["EventPattern"]["region"] == [{"Ref": "AWS::Region"}]
    cluster = default_synth.resolve(default_synth.stack.cluster_arn)
    assert cluster == {"Fn::Join": ["", [
        "arn:", {"Ref": "AWS::Partition"}, ":ecs:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
        f":cluster/{DEFAULTS.cluster_name}",
    ]]}


def test_each_rule_targets_the_stream_with_its_key_path_retries_and_dead_letters(default_synth: Synth) -> None:
    # GIVEN the rules and their targets
    stream = {"Fn::GetAtt": [default_synth.logical_id(default_synth.stack.stream), "Arn"]}
    queue = {"Fn::GetAtt": [default_synth.logical_id(default_synth.stack.ingest.dead_letter_queue), "Arn"]}
    for rule in ingest_rules(default_synth.stack.cluster_arn):
        # THEN each has one Kinesis target keyed by its own path, with a retry policy and the DLQ
        default_synth.template.has_resource_properties("AWS::Events::Rule", {
            "Name": f"gpu-recovery-{rule.name}",
            "State": "ENABLED",
            "Targets": [Match.object_like({
                "Arn": stream,
                "KinesisParameters": {"PartitionKeyPath": rule.partition_key_path},
                "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400},
                "DeadLetterConfig": {"Arn": queue},
                "RoleArn": Match.any_value(),
            })],
        })


def test_dead_letter_queue_is_encrypted_retained_and_refuses_plain_http(default_synth: Synth) -> None:
    # GIVEN the queue and its policy
    default_synth.template.has_resource_properties("AWS::SQS::Queue", {
        "KmsMasterKeyId": key_ref(default_synth), "MessageRetentionPeriod": 14 * 24 * 3600,
    })
    # THEN undeliverable events outlive the stack
    default_synth.template.all_resources("AWS::SQS::Queue", {"DeletionPolicy": "Retain",
                                                             "UpdateReplacePolicy": "Retain"})
    # AND plain-HTTP access is denied, and EventBridge may send only from our rules
    rules = [{"Fn::GetAtt": [default_synth.logical_id(rule), "Arn"]} for rule in default_synth.stack.ingest.rules]
    default_synth.template.has_resource_properties("AWS::SQS::QueuePolicy", {"PolicyDocument": {
        "Statement": Match.array_with([
            Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
            Match.object_like({
                "Effect": "Allow", "Action": "sqs:SendMessage", "Principal": {"Service": "events.amazonaws.com"},
                "Condition": {"ArnEquals": {"aws:SourceArn": rules}},
            }),
        ])
    }})


# --- tables -------------------------------------------------------------------------------------------


def test_tables_follow_the_specs_with_pitr_kms_and_ttl(default_synth: Synth) -> None:
    # GIVEN the table specs and the settings' physical names
    names = DEFAULTS.table_names()
    default_synth.template.resource_count_is("AWS::DynamoDB::Table", len(DEPLOYED) + 2 * 3)  # + the KCL's
    for logical in DEPLOYED:
        spec = TABLE_SPECS[logical]
        keys = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
        if spec.sort_key:
            keys.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
        ttl = ({"AttributeName": spec.ttl_attribute, "Enabled": True} if spec.ttl_attribute else Match.absent())
        # THEN each is on-demand, PITR, encrypted with our key, with TTL exactly where the spec has one
        default_synth.template.has_resource_properties("AWS::DynamoDB::Table", {
            "TableName": names[logical],
            "KeySchema": keys,
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_ref(default_synth)},
            "TimeToLiveSpecification": ttl,
        })
    # AND the projection tables keep the old tool's names
    assert {names["ecs_task"], names["ecs_job"], names["ecs_node"]} == {"ecs_task", "ecs_job", "ecs_node"}


def test_the_checkpoints_table_of_the_local_reader_is_not_deployed(default_synth: Synth) -> None:
    # GIVEN the deployed tables
    deployed = {t["Properties"]["TableName"] for t in default_synth.resources("AWS::DynamoDB::Table").values()}
    # THEN the KCL keeps its own lease tables instead
    assert DEFAULTS.checkpoint_table not in deployed


# --- consumers ------------------------------------------------------------------------------------------


def test_one_fargate_service_per_kcl_application(default_synth: Synth) -> None:
    # GIVEN the services
    default_synth.template.resource_count_is("AWS::ECS::Service", 2)
    default_synth.template.has_resource_properties("AWS::ECS::Cluster", {
        "ClusterSettings": [{"Name": "containerInsights", "Value": "enhanced"}],
    })
    for name in ("projector", "recovery"):
        # THEN each runs `gpu-recovery consume <name> --engine kcl` on Fargate, two workers, private subnets
        default_synth.template.has_resource_properties("AWS::ECS::TaskDefinition", {
            "Family": f"gpu-recovery-{name}",
            "RequiresCompatibilities": ["FARGATE"],
            "ContainerDefinitions": [Match.object_like({
                "EntryPoint": ["gpu-recovery"],
                "Command": ["consume", name, "--engine", "kcl"],
                "LogConfiguration": Match.object_like({"LogDriver": "awslogs"}),
            })],
        })
    default_synth.template.all_resources_properties("AWS::ECS::Service", {
        "LaunchType": "FARGATE",
        "DesiredCount": 2,
        "NetworkConfiguration": {"AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "DISABLED"})},
        "DeploymentConfiguration": Match.object_like({
            "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
        }),
    })


def test_logs_are_encrypted_with_our_key_kept_with_the_stack_gone_and_expire(default_synth: Synth) -> None:
    # GIVEN every log group (consumers, health check, VPC flow logs, Firehose delivery)
    default_synth.template.resource_count_is("AWS::Logs::LogGroup", 4)
    # THEN each is encrypted with the stack's key and keeps logs 30 days, not forever
    default_synth.template.all_resources_properties("AWS::Logs::LogGroup", {
        "KmsKeyId": key_ref(default_synth), "RetentionInDays": 30,
    })
    # AND deleting the stack leaves them (and their logs) for the investigation
    default_synth.template.all_resources("AWS::Logs::LogGroup", {"DeletionPolicy": "Retain",
                                                                 "UpdateReplacePolicy": "Retain"})


def test_consumers_get_the_settings_including_the_old_variables(default_synth: Synth) -> None:
    # GIVEN the consumer task definitions
    definitions = [d for d in default_synth.resources("AWS::ECS::TaskDefinition").values()
                   if d["Properties"]["Family"].startswith("gpu-recovery-")
                   and d["Properties"]["Family"] != DEFAULTS.health_check_task]
    assert len(definitions) == 2
    for definition in definitions:
        env = container_env(definition)
        # THEN the old tool's variables and ours carry the settings, with the real account and region
        assert env["TASK_TABLE_NAME"] == "ecs_task"
        assert env["JOB_TABLE_NAME"] == "ecs_job"
        assert env["NODE_TABLE_NAME"] == "ecs_node"
        assert env["ECS_CLUSTER_NAME"] == DEFAULTS.cluster_name
        assert env["DCGM_HEALTH_CHECK_TASK"] == DEFAULTS.health_check_task
        assert env["SNS_TOPIC_NAME"] == DEFAULTS.sns_topic_name
        assert env["SNS_TOPIC_DISPLAY_NAME"] == DEFAULTS.sns_topic_display_name
        assert env["GPU_RECOVERY_STREAM_NAME"] == DEFAULTS.stream_name
        assert env["GPU_RECOVERY_ACCOUNT_ID"] == {"Ref": "AWS::AccountId"}
        assert env["GPU_RECOVERY_REGION"] == {"Ref": "AWS::Region"}
        assert env["GPU_RECOVERY_REPLACE_INSTANCES"] == "false"
        assert "GPU_RECOVERY_ENDPOINT_URL" not in env


APPLICATIONS = (("projector", PROJECTOR_APP), ("recovery", RECOVERY_APP))


def test_the_stack_creates_each_kcl_application_s_tables_encrypted_with_pitr(default_synth: Synth) -> None:
    key = key_ref(default_synth)
    secured = {
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": key},
    }
    for _name, application in APPLICATIONS:
        tables = KclTables.of(application)
        # THEN the lease table has KCL 3's key and lease-owner index
        default_synth.template.has_resource_properties("AWS::DynamoDB::Table", {
            **secured,
            "TableName": tables.lease,
            "KeySchema": [{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [{
                "IndexName": "LeaseOwnerToLeaseKeyIndex",
                "KeySchema": [{"AttributeName": "leaseOwner", "KeyType": "HASH"},
                              {"AttributeName": "leaseKey", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }],
        })
        # AND the coordinator-state and worker-metrics tables have theirs
        for table, hash_key in ((tables.coordinator_state, "key"), (tables.worker_metrics, "wid")):
            default_synth.template.has_resource_properties("AWS::DynamoDB::Table", {
                **secured, "TableName": table, "KeySchema": [{"AttributeName": hash_key, "KeyType": "HASH"}],
            })
    # AND like every table of ours, deleting the stack leaves them
    default_synth.template.all_resources("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})


def test_the_daemon_is_told_the_tables_the_stack_created(default_synth: Synth) -> None:
    for name, application in APPLICATIONS:
        # GIVEN the daemon's properties for this application, as `consume --engine kcl` renders them
        props = dict(property_items(DaemonConfig(stream_name="s", application_name=application, executable="x")))
        tables = default_synth.resources("AWS::DynamoDB::Table")
        created = {tables[default_synth.logical_id(t)]["Properties"]["TableName"]
                   for t in default_synth.stack.consumers.kcl_tables[name].tables}
        # THEN the three tables it names are exactly the three the stack created for it
        assert {props["tableName"], props["coordinatorStateTableName"], props["workerMetricsTableName"]} == created


def test_kcl_may_use_only_its_own_tables_and_never_create_or_alter_one(default_synth: Synth) -> None:
    for name, application in APPLICATIONS:
        statements = by_sid(role_statements(default_synth, default_synth.stack.consumers.roles[name]))
        kcl = default_synth.stack.consumers.kcl_tables[name]
        # THEN its lease, coordinator-state and worker-metrics tables, by their ARNs, only
        tables = [{"Fn::GetAtt": [default_synth.logical_id(t), "Arn"]} for t in kcl.tables]
        assert statements["KclMetadataTables"]["Resource"] == tables
        assert not {"dynamodb:CreateTable", "dynamodb:UpdateTable", "dynamodb:DeleteTable"} & set(
            statements["KclMetadataTables"]["Action"])
        # AND the one index it queries, by name
        assert _flat(statements["KclLeaseOwnerIndex"]["Resource"]) == (
            f"<{default_synth.logical_id(kcl.lease)}.Arn>/index/LeaseOwnerToLeaseKeyIndex")
        # AND it may publish metrics only to our namespace and its KCL application's
        assert statements["PutOwnMetrics"]["Condition"] == {
            "StringEquals": {"cloudwatch:namespace": [METRIC_NAMESPACE, application]}
        }


# --- the health check ---------------------------------------------------------------------------------


def test_health_check_runs_on_ec2_and_anywhere_with_gpus_and_host_network(default_synth: Synth) -> None:
    # GIVEN the DCGM task definition
    default_synth.template.has_resource_properties("AWS::ECS::TaskDefinition", {
        "Family": DEFAULTS.health_check_task,
        "RequiresCompatibilities": ["EC2", "EXTERNAL"],
        "NetworkMode": "host",
        "ContainerDefinitions": [Match.object_like({
            "Name": "healthcheck",
            "ResourceRequirements": [{"Type": "GPU", "Value": "8"}],
            # Not privileged: only the two capabilities DCGM and the kernel log need.
            "Privileged": Match.absent(),
            "LinuxParameters": {"Capabilities": {"Add": ["SYS_ADMIN", "SYSLOG"]}},
            "Environment": Match.array_with([{"Name": "GPU_RECOVERY_STREAM_NAME", "Value": DEFAULTS.stream_name}]),
        })],
    })


def test_health_check_role_can_only_put_records_to_our_stream(default_synth: Synth) -> None:
    # GIVEN the health check's task role
    statements = role_statements(default_synth, default_synth.stack.health_check.task_role)
    stream = {"Fn::GetAtt": [default_synth.logical_id(default_synth.stack.stream), "Arn"]}
    # THEN it may put records to this stream and make data keys with our key, nothing else
    assert sorted((tuple(as_list(s["Action"])), str(s["Resource"])) for s in statements) == sorted([
        (("kinesis:PutRecord", "kinesis:PutRecords"), str(stream)),
        (("kms:GenerateDataKey",), str(key_ref(default_synth))),
    ])
    # AND only ECS tasks of this account can assume it
    default_synth.template.has_resource_properties("AWS::IAM::Role", {
        "Description": "DCGM health check: put records to the stream",
        "AssumeRolePolicyDocument": {"Statement": [Match.object_like({
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        })]},
    })


# --- the recovery's actions -----------------------------------------------------------------------------


def recovery_statements(synth: Synth) -> dict[str, dict[str, Any]]:
    return by_sid(role_statements(synth, synth.stack.consumers.roles["recovery"]))


def test_start_task_only_for_the_health_check_family_and_restarts_only_in_our_cluster(
    default_synth: Synth,
) -> None:
    statements = recovery_statements(default_synth)
    cluster = {"ArnEquals": {"ecs:cluster": default_synth.resolve(default_synth.stack.cluster_arn)}}
    # THEN the health check: only its family's revisions, only in our cluster
    health = statements["StartHealthCheckInCluster"]
    assert health["Action"] == "ecs:StartTask"
    assert _flat(health["Resource"]).endswith(f":task-definition/{DEFAULTS.health_check_task}:*")
    assert health["Condition"] == cluster
    # AND restarts: StartTask only, only the configured families, only in our cluster
    restart = statements["RestartJobTasksInCluster"]
    assert restart["Action"] == "ecs:StartTask"
    assert _flat(restart["Resource"]).endswith(f":task-definition/{REQUIRED_CONTEXT['gpu_task_families']}:*")
    assert restart["Condition"] == cluster
    # AND stopping, describing, draining and attributes: only tasks and nodes of our cluster
    for sid in ("TasksInCluster", "NodesInCluster"):
        assert statements[sid]["Condition"] == cluster
        assert f"/{DEFAULTS.cluster_name}/*" in _flat(statements[sid]["Resource"])
    assert set(as_list(statements["TasksInCluster"]["Action"])) == {"ecs:StopTask", "ecs:DescribeTasks"}
    assert set(as_list(statements["NodesInCluster"]["Action"])) == {
        "ecs:UpdateContainerInstancesState", "ecs:PutAttributes", "ecs:ListTasks",
    }
    # AND tagging only as part of StartTask (restarted tasks keep their tags)
    assert statements["TagTasksOnStart"]["Condition"] == {"StringEquals": {"ecs:CreateAction": "StartTask"}}


def test_reboot_and_ssm_only_on_nodes_tagged_with_our_cluster(default_synth: Synth) -> None:
    statements = recovery_statements(default_synth)
    tagged = {"StringEquals": {f"aws:ResourceTag/{NODE_TAG_KEY}": DEFAULTS.cluster_name}}
    # THEN EC2 reboots need the tag
    assert statements["RebootTaggedInstances"]["Action"] == "ec2:RebootInstances"
    assert statements["RebootTaggedInstances"]["Condition"] == tagged
    # AND SendCommand may use only AWS-RunShellScript, and only on tagged managed instances
    document = statements["RunShellScriptDocumentOnly"]
    assert _flat(document["Resource"]) == "arn:<AWS::Partition>:ssm:<AWS::Region>::document/AWS-RunShellScript"
    targets = statements["SendCommandToTaggedManagedInstances"]
    assert _flat(targets["Resource"]).endswith(":managed-instance/*")
    assert targets["Condition"] == tagged
    # AND replacing instances is off by default
    assert "ReplaceInTaggedGroups" not in statements


def test_publish_only_to_our_topic_and_pass_only_the_roles_it_starts_tasks_with(default_synth: Synth) -> None:
    statements = recovery_statements(default_synth)
    stack = default_synth.stack
    topic = {"Ref": default_synth.logical_id(stack.topic)}
    assert statements["NotifyOurTopic"] == {
        "Sid": "NotifyOurTopic", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic,
    }
    passed = statements["PassJobAndHealthCheckRoles"]
    # THEN PassRole names the health check's task and execution roles, and only for ECS tasks
    health_roles = [
        {"Fn::GetAtt": [default_synth.logical_id(stack.health_check.task_role), "Arn"]},
        {"Fn::GetAtt": [default_synth.logical_id(stack.health_check.task_definition.execution_role), "Arn"]},
    ]
    assert passed["Resource"] == health_roles
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_recovery_can_use_the_key_its_topic_and_stream_are_encrypted_with(default_synth: Synth) -> None:
    # GIVEN the recovery role's KMS statements (publishing to an encrypted topic needs the key too)
    key = key_ref(default_synth)
    kms_actions = {a for s in role_statements(default_synth, default_synth.stack.consumers.roles["recovery"])
                   if s["Resource"] == key for a in as_list(s["Action"])}
    # THEN it can make data keys and decrypt with the stack's key, and only that key
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= kms_actions


def test_the_projector_cannot_act_on_the_fleet_nor_write_to_the_stream(default_synth: Synth) -> None:
    # GIVEN the projector's role
    actions = {a for s in role_statements(default_synth, default_synth.stack.consumers.roles["projector"])
               for a in as_list(s["Action"])}
    # THEN it has no ECS, EC2, SSM, SNS or IAM action
    assert not {a for a in actions if a.split(":")[0] in {"ecs", "ec2", "ssm", "sns", "iam", "autoscaling"}}
    # AND it reads the stream but cannot put a record to it (only the recovery appends)
    assert "kinesis:GetRecords" in actions
    assert not {a for a in actions if a.startswith(("kinesis:Put", "kinesis:*"))}
    recovery = {a for s in role_statements(default_synth, default_synth.stack.consumers.roles["recovery"])
                for a in as_list(s["Action"])}
    assert {"kinesis:PutRecord", "kinesis:PutRecords"} <= recovery


def test_the_stack_refuses_to_synthesize_without_the_families_it_may_restart(
    tmp_path_factory: pytest.TempPathFactory, source_root: Any,
) -> None:
    # GIVEN no gpu_task_families anywhere (context or environment)
    # WHEN the app is synthesized / THEN it stops with the setting's name and the fix, granting nothing
    with pytest.raises(ConfigError) as caught:
        synthesize(tmp_path_factory.mktemp("cdk.out"), source_root)
    message = str(caught.value)
    assert "setting gpu_task_families is empty" in message
    assert "fix: pass -c gpu_task_families=FAMILY[,FAMILY...]" in message
    assert "GPU_RECOVERY_GPU_TASK_FAMILIES" in message


# --- notifications, archive, analytics --------------------------------------------------------------------


def test_topic_is_encrypted_named_by_the_settings_and_refuses_plain_http(default_synth: Synth) -> None:
    default_synth.template.has_resource_properties("AWS::SNS::Topic", {
        "TopicName": DEFAULTS.sns_topic_name,
        "DisplayName": DEFAULTS.sns_topic_display_name,
        "KmsMasterKeyId": key_ref(default_synth),
    })
    default_synth.template.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {
        "Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        })]),
    }})
    default_synth.template.resource_count_is("AWS::SNS::Subscription", 0)


def test_archive_bucket_is_private_encrypted_versioned_logged_and_ages_to_glacier(default_synth: Synth) -> None:
    archive = default_synth.stack.archive
    logs_bucket = {"Ref": default_synth.logical_id(archive.access_logs)}
    default_synth.template.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [Match.object_like({
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_ref(default_synth)},
        })]},
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
        "VersioningConfiguration": {"Status": "Enabled"},
        "LoggingConfiguration": {"DestinationBucketName": logs_bucket, "LogFilePrefix": "archive/"},
        "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like({
            "Status": "Enabled",
            "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 90}],
        })])},
    })
    # AND both buckets refuse plain HTTP and block public access
    default_synth.template.resource_count_is("AWS::S3::BucketPolicy", 2)
    default_synth.template.all_resources_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {
        "Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        })]),
    }})
    default_synth.template.all_resources_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicPolicy": True}),
    })


def test_firehose_archives_the_stream_as_gzip_json_lines_by_date(default_synth: Synth) -> None:
    stream = {"Fn::GetAtt": [default_synth.logical_id(default_synth.stack.stream), "Arn"]}
    default_synth.template.has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
        "DeliveryStreamType": "KinesisStreamAsSource",
        "KinesisStreamSourceConfiguration": Match.object_like({"KinesisStreamARN": stream}),
        "ExtendedS3DestinationConfiguration": Match.object_like({
            "Prefix": ARCHIVE_PREFIX,
            "ErrorOutputPrefix": ERROR_PREFIX,
            "CompressionFormat": "GZIP",
            "EncryptionConfiguration": {"KMSEncryptionConfig": {"AWSKMSKeyARN": key_ref(default_synth)}},
            "ProcessingConfiguration": {"Enabled": True, "Processors": [
                Match.object_like({"Type": "AppendDelimiterToRecord"}),
            ]},
        }),
    })
    assert ARCHIVE_PREFIX == "events/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"


def test_subscribers_get_an_enhanced_fan_out_consumer_and_its_arn(default_synth: Synth) -> None:
    consumer = Capture()
    default_synth.template.has_resource_properties("AWS::Kinesis::StreamConsumer", {
        "ConsumerName": "gpu-recovery-subscribers",
        "StreamARN": {"Fn::GetAtt": [default_synth.logical_id(default_synth.stack.stream), "Arn"]},
    })
    default_synth.template.has_output("*", {"Value": {"Fn::GetAtt": [consumer, "ConsumerARN"]}})
    assert consumer.as_string() in default_synth.resources("AWS::Kinesis::StreamConsumer")


# --- operations --------------------------------------------------------------------------------------------


def test_alarms_cover_lag_dead_letters_parking_failures_incidents_and_dead_consumers(default_synth: Synth) -> None:
    alarms = default_synth.resources("AWS::CloudWatch::Alarm")
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    # THEN each failure mode has an alarm
    assert metrics == {
        ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        (METRIC_NAMESPACE, "ParkedRecords"),
        (METRIC_NAMESPACE, "FailedActions"),
        (METRIC_NAMESPACE, "OpenIncidents"),
        ("ECS/ContainerInsights", "RunningTaskCount"),
    }
    assert len(alarms) == 7  # RunningTaskCount once per consumer service
    # AND every alarm (and its recovery) goes to our topic
    topic = {"Ref": default_synth.logical_id(default_synth.stack.topic)}
    default_synth.template.all_resources_properties("AWS::CloudWatch::Alarm", {
        "AlarmActions": [topic], "OKActions": [topic],
    })
    default_synth.template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "GetRecords.IteratorAgeMilliseconds", "Threshold": 300_000, "Statistic": "Maximum",
    })
    default_synth.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
