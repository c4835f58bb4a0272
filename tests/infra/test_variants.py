"""The stack with every knob turned: provisioned shards, a year of retention, emails, replacement,
named job families and roles, an explicit account and region, an existing VPC, prebuilt images.

One synthesis (the session fixture ``turned``) for the whole module.
"""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from events_schema.rules import ingest_rules
from infra.nag import flatten_reference
from infra.permissions import NODE_TAG_KEY
from tests.infra.support import ACCOUNT, JOB_ROLES, REGION, Synth, by_sid, role_statements
from tests.infra.support import TURNED_CONTEXT as CONTEXT


def test_provisioned_stream_with_a_year_of_retention(turned: Synth) -> None:
    turned.template.has_resource_properties("AWS::Kinesis::Stream", {
        "StreamModeDetails": {"StreamMode": "PROVISIONED"},
        "ShardCount": 8,
        "RetentionPeriodHours": 8760,
    })


def test_the_stack_targets_the_given_account_and_region(turned: Synth) -> None:
    # GIVEN an explicit account and region
    # THEN the stack is pinned there and the rules match the literal cluster ARN
    assert (turned.stack.account, turned.stack.region) == (ACCOUNT, REGION)
    cluster = flatten_reference(turned.resolve(turned.stack.cluster_arn))
    assert cluster == f"arn:<AWS::Partition>:ecs:{REGION}:{ACCOUNT}:cluster/gpu-prod"
    for rule in ingest_rules(turned.stack.cluster_arn):
        turned.template.has_resource_properties("AWS::Events::Rule", {
            "EventPattern": turned.resolve(rule.event_pattern),
        })
    # AND the AWS Health and EC2 rules match that account (and region) literally
    turned.template.has_resource_properties("AWS::Events::Rule", {
        "Name": "gpu-recovery-ec2-instance-stopped",
        "EventPattern": Match.object_like({"account": [ACCOUNT], "region": [REGION]}),
    })


def test_settings_from_context_name_the_resources(turned: Synth) -> None:
    turned.template.has_resource_properties("AWS::DynamoDB::Table", {"TableName": "legacy_tasks"})
    turned.template.has_resource_properties("AWS::SNS::Topic", {"TopicName": "gpu-alerts"})
    (recovery,) = [d for d in turned.resources("AWS::ECS::TaskDefinition").values()
                   if d["Properties"]["Family"] == "gpu-recovery-recovery"]
    env = {e["Name"]: e["Value"] for e in recovery["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert env["TASK_TABLE_NAME"] == "legacy_tasks"
    assert env["ECS_CLUSTER_NAME"] == "gpu-prod"
    assert env["GPU_RECOVERY_REPLACE_INSTANCES"] == "true"
    assert (env["GPU_RECOVERY_ACCOUNT_ID"], env["GPU_RECOVERY_REGION"]) == (ACCOUNT, REGION)


def test_emails_subscribe_to_the_topic(turned: Synth) -> None:
    turned.template.resource_count_is("AWS::SNS::Subscription", 2)
    for email in ("ops@example.com", "oncall@example.com"):
        turned.template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": email})


def test_desired_counts_gpus_and_log_retention_follow_the_config(turned: Synth) -> None:
    counts = sorted(s["Properties"]["DesiredCount"] for s in turned.resources("AWS::ECS::Service").values())
    assert counts == [1, 3]
    turned.template.has_resource_properties("AWS::ECS::TaskDefinition", {
        "ContainerDefinitions": [Match.object_like({"ResourceRequirements": [{"Type": "GPU", "Value": "4"}]})],
    })
    turned.template.all_resources_properties("AWS::Logs::LogGroup", {"RetentionInDays": 365})


def test_prebuilt_images_need_no_dockerfile_and_no_asset(turned: Synth) -> None:
    images = {
        d["Properties"]["ContainerDefinitions"][0]["Image"]
        for d in turned.resources("AWS::ECS::TaskDefinition").values()
    }
    assert images == {CONTEXT["consumer_image"], CONTEXT["health_check_image"]}
    # AND no execution role may pull from the CDK asset repository
    for statement in _all_statements(turned):
        assert not str(statement["Action"]).startswith("ecr:Batch"), statement


def test_an_existing_vpc_is_used_without_a_lookup(turned: Synth) -> None:
    turned.template.resource_count_is("AWS::EC2::VPC", 0)
    turned.template.resource_count_is("AWS::EC2::NatGateway", 0)
    turned.template.all_resources_properties("AWS::ECS::Service", {
        "NetworkConfiguration": {"AwsvpcConfiguration": Match.object_like({
            "Subnets": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"],
        })},
    })
    turned.template.has_resource_properties("AWS::EC2::SecurityGroup", {"VpcId": "vpc-0123456789abcdef0"})


def test_restarts_are_limited_to_the_named_families_and_roles(turned: Synth) -> None:
    statements = by_sid(role_statements(turned, turned.stack.consumers.roles["recovery"]))
    restart = [flatten_reference(r) for r in _list(statements["RestartJobTasksInCluster"]["Resource"])]
    assert restart == [
        f"arn:<AWS::Partition>:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:*"
        for family in ("train-llm", "train-vision")
    ]
    passed = statements["PassJobAndHealthCheckRoles"]["Resource"]
    assert passed[2:] == JOB_ROLES


def test_replacement_only_terminates_through_tagged_auto_scaling_groups(turned: Synth) -> None:
    statements = by_sid(role_statements(turned, turned.stack.consumers.roles["recovery"]))
    replace = statements["ReplaceInTaggedGroups"]
    assert replace["Action"] == "autoscaling:TerminateInstanceInAutoScalingGroup"
    assert replace["Condition"] == {"StringEquals": {f"aws:ResourceTag/{NODE_TAG_KEY}": "gpu-prod"}}
    # AND nothing may terminate EC2 instances directly
    actions = {a for s in statements.values() for a in _list(s["Action"])}
    assert "ec2:TerminateInstances" not in actions


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _all_statements(synth: Synth) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for type_name in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for resource in synth.resources(type_name).values():
            found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return found
