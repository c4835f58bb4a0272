"""The node watcher's ECS daemon service: off by default; when on, one task on every GPU node with no GPU
reserved, a role that can only put records to our stream, logs encrypted with the stack's key and kept; the
template passes cfn-lint and cdk-nag like the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match
from cfnlint.api import ManualArgs, lint_file

from consumers.core.errors import ConfigError
from gpu_recovery.settings import load_settings
from infra.config import load_infra_config
from tests.infra.support import REQUIRED_CONTEXT, Synth, as_list, role_statements, synthesize

DEFAULTS = load_settings()
LOG_GROUP = "/gpu-recovery/node-watcher"


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, source_root: Path) -> Iterator[Synth]:
    yield synthesize(tmp_path_factory.mktemp("cdk.out"), source_root,
                     context={**REQUIRED_CONTEXT, "node_watcher": "true"})


def watcher_definition(synth: Synth) -> dict[str, Any]:
    (definition,) = [d for d in synth.resources("AWS::ECS::TaskDefinition").values()
                     if d["Properties"]["ContainerDefinitions"][0]["Name"] == "node-watcher"]
    return definition


def test_off_by_default(default_synth: Synth) -> None:
    assert default_synth.stack.node_watcher is None
    default_synth.template.resource_properties_count_is("AWS::ECS::Service", {"SchedulingStrategy": "DAEMON"}, 0)
    assert not [d for d in default_synth.resources("AWS::ECS::TaskDefinition").values()
                if d["Properties"]["ContainerDefinitions"][0]["Name"] == "node-watcher"]


def test_a_daemon_service_on_the_gpu_cluster_runs_the_watcher(watched: Synth) -> None:
    # GIVEN the stack with node_watcher on
    definition = watcher_definition(watched)
    # THEN a DAEMON service of EC2 launch type on the GPU cluster runs that task definition
    watched.template.has_resource_properties("AWS::ECS::Service", {
        "Cluster": DEFAULTS.cluster_name,
        "SchedulingStrategy": "DAEMON",
        "LaunchType": "EC2",
        "TaskDefinition": {"Ref": watched.logical_id(watched.stack.node_watcher.task_definition)},
        "DeploymentConfiguration": {"MaximumPercent": 100, "MinimumHealthyPercent": 0},
    })
    # AND the task: host network, EC2 and ECS Anywhere, `healthcheck --watch` to our stream, no GPU reserved,
    # no environment (settings are flags), logs to its own group
    properties = definition["Properties"]
    assert (properties["NetworkMode"], properties["RequiresCompatibilities"]) == ("host", ["EC2", "EXTERNAL"])
    (container,) = properties["ContainerDefinitions"]
    assert container["Command"][:5] == ["--watch", "--interval-s", "300", "--stream-name", DEFAULTS.stream_name]
    assert "ResourceRequirements" not in container and "Environment" not in container
    assert "Privileged" not in container
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == \
        {"Ref": watched.logical_id(watched.stack.node_watcher.log_group)}


def test_the_watchers_role_can_only_put_records_to_our_stream(watched: Synth) -> None:
    watcher = watched.stack.node_watcher
    assert watcher is not None
    statements = role_statements(watched, watcher.task_role)
    stream = {"Fn::GetAtt": [watched.logical_id(watched.stack.stream), "Arn"]}
    key = {"Fn::GetAtt": [watched.logical_id(watched.stack.stream.encryption_key), "Arn"]}
    assert sorted((tuple(as_list(s["Action"])), json.dumps(s["Resource"], sort_keys=True)) for s in statements) == \
        sorted([(("kinesis:PutRecord", "kinesis:PutRecords"), json.dumps(stream, sort_keys=True)),
                (("kms:GenerateDataKey",), json.dumps(key, sort_keys=True))])
    watched.template.has_resource_properties("AWS::IAM::Role", {
        "Description": "node watcher: put GPU health signals to the stream",
        "AssumeRolePolicyDocument": {"Statement": [Match.object_like({
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        })]},
    })


def test_logs_are_encrypted_with_the_stacks_key_kept_and_retained(watched: Synth) -> None:
    watcher = watched.stack.node_watcher
    assert watcher is not None
    (group,) = [g for g in watched.resources("AWS::Logs::LogGroup").values()
                if g["Properties"].get("LogGroupName") == LOG_GROUP]
    key_id = watched.logical_id(watched.stack.stream.encryption_key)
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert group["Properties"]["RetentionInDays"] == 30
    assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Retain", "Retain")
    # AND the key lets CloudWatch Logs use it for that group only
    (key,) = [k for name, k in watched.resources("AWS::KMS::Key").items() if name == key_id]
    (grant,) = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid") == "NodeWatcherLogs"]
    assert grant["Principal"] == {"Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
    (arn,) = grant["Condition"]["ArnEquals"].values()
    assert f":log-group:{LOG_GROUP}" in json.dumps(arn)


def test_cfn_lint_and_cdk_nag_stay_clean_with_the_watcher(watched: Synth) -> None:
    template = watched.outdir / f"{watched.stack.stack_name}.template.json"
    matches = lint_file(template, config=ManualArgs(regions=["us-east-1", "us-west-2", "eu-west-1"]))
    assert [f"{m.rule.id} {m.message} ({m.path})" for m in matches] == []
    report = json.loads((watched.outdir / "validation-report.json").read_text())
    assert [(p["pluginName"], v["ruleName"]) for p in report["pluginReports"] for v in p["violations"]] == []


@pytest.mark.parametrize(("given", "on"), [("true", True), ("false", False), ("False", False), ("1", True)])
def test_the_flag_reads_from_context_or_environment(given: str, on: bool) -> None:
    assert load_infra_config({"node_watcher": given}, {}).node_watcher is on
    assert load_infra_config({}, {"GPU_RECOVERY_NODE_WATCHER": given}).node_watcher is on


def test_a_bad_flag_names_the_key_and_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_infra_config({"node_watcher": "sometimes"}, {})
    assert "node_watcher" in str(caught.value) and "GPU_RECOVERY_NODE_WATCHER" in str(caught.value)
