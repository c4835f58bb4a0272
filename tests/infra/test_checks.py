"""The synthesized templates pass cfn-lint and cdk-nag (AwsSolutions), and no policy grants "*" where a
narrower resource exists.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import cfnlint
import pytest
from cfnlint.api import ManualArgs, lint_file

from infra.nag import REVIEWED_WILDCARDS, flatten_reference, reviewed_reason, wildcard_findings
from tests.infra.support import Synth, as_list

# Actions that may name Resource "*": each either takes no resource at all (checked below against
# cfn-lint's copy of the Service Authorization Reference) or is scoped by the condition named here.
STAR_ALLOWED: dict[str, str | None] = {
    "ecr:GetAuthorizationToken": None,  # the execution role's registry login; no resource-level scope
    "cloudwatch:PutMetricData": "cloudwatch:namespace",  # scoped to our namespaces by condition
}
IDENTITY_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


@pytest.fixture(params=["default_synth", "turned"])
def synth(request: pytest.FixtureRequest) -> Synth:
    found: Synth = request.getfixturevalue(request.param)
    return found


def template_file(synth: Synth) -> Path:
    return synth.outdir / f"{synth.stack.stack_name}.template.json"


def test_cfn_lint_finds_nothing(synth: Synth) -> None:
    # GIVEN the synthesized template as `cdk synth` writes it
    # WHEN cfn-lint checks it for the regions we document
    matches = lint_file(template_file(synth), config=ManualArgs(regions=["us-east-1", "us-west-2", "eu-west-1"]))
    # THEN there is no error, warning or informational finding
    assert [f"{m.rule.id} {m.message} ({m.path})" for m in matches] == []


def nag_acknowledgments(synth: Synth) -> list[dict[str, str]]:
    """The AwsSolutions acknowledgments cdk-nag wrote into the template's metadata."""
    return [
        rule
        for resource in synth.json["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
        if rule["id"].startswith("AwsSolutions-")
    ]


def test_cdk_nag_aws_solutions_ran_and_left_nothing_unacknowledged(synth: Synth) -> None:
    # GIVEN the synthesis (it raises on any unacknowledged AwsSolutions error) and its validation report
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    # THEN the pack ran (its acknowledgments are in the template) and reported no violation, not even a
    # warning; CDK's own template validation reported none either
    assert nag_acknowledgments(synth)
    violations = [(plugin["pluginName"], violation["ruleName"])
                  for plugin in report["pluginReports"] for violation in plugin["violations"]]
    assert violations == []


def test_every_acknowledgment_says_why(synth: Synth) -> None:
    # GIVEN the AwsSolutions acknowledgments
    acknowledged = nag_acknowledgments(synth)
    # THEN each comes with a reason a reader can act on
    for rule in acknowledged:
        assert len(rule["reason"]) >= 40, rule
    assert {rule["id"] for rule in acknowledged} >= {
        "AwsSolutions-SQS3", "AwsSolutions-ECS2", "AwsSolutions-KDF1", "AwsSolutions-KDS3",
    }


def test_no_identity_policy_grants_star_where_a_narrower_resource_exists(synth: Synth) -> None:
    # GIVEN every statement of every identity policy (policy resources, managed policies, and policies
    # inline in roles); key, queue, topic and bucket policies name their own resource with "*" or an ARN
    statements = [
        statement
        for type_name in IDENTITY_POLICY_TYPES
        for resource in synth.resources(type_name).values()
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ] + [
        statement
        for role in synth.resources("AWS::IAM::Role").values()
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    assert statements
    for statement in statements:
        # A Deny only narrows (the chat channel's guardrail denies every action on every resource).
        if statement.get("Effect") == "Deny" or "*" not in as_list(statement["Resource"]):
            continue
        # THEN "*" appears only alone, only for allowed actions, and with their scoping condition
        assert as_list(statement["Resource"]) == ["*"], statement
        for action in as_list(statement["Action"]):
            assert action in STAR_ALLOWED, f"{action} on Resource '*': name the resource instead ({statement})"
            condition_key = STAR_ALLOWED[action]
            if condition_key is not None:
                keys = {key for operator in statement.get("Condition", {}).values() for key in operator}
                assert condition_key in keys, statement


def test_no_role_trusts_more_than_its_service(synth: Synth) -> None:
    # GIVEN every role's trust policy
    for role in synth.resources("AWS::IAM::Role").values():
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            # THEN a service principal assumes it, never an account or "*"
            assert set(statement["Principal"]) == {"Service"}, statement


@cache
def _resource_types() -> dict[str, Any]:
    data = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    loaded: dict[str, Any] = json.loads(data.read_text())
    return loaded


def test_the_star_allow_list_holds_only_actions_without_resource_scope_or_with_a_condition() -> None:
    # GIVEN cfn-lint's copy of the Service Authorization Reference
    for action, condition_key in STAR_ALLOWED.items():
        service, name = action.split(":")
        resources = _resource_types()[service]["Actions"][name.lower()].get("Resources", [])
        # THEN an allowed action either has no resource type or must carry its scoping condition
        assert not resources or condition_key is not None, action


def test_nag_ids_are_rendered_as_cdk_nag_renders_them() -> None:
    # GIVEN a resolved statement like the stack's
    document = {"Statement": [{
        "Effect": "Allow", "Action": ["kms:GenerateDataKey*", "kinesis:PutRecord"],
        "Resource": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":ecs:", {"Ref": "AWS::Region"}, ":",
                                        {"Ref": "AWS::AccountId"}, ":task/gpu/*"]]},
                     {"Fn::GetAtt": ["Stream1234", "Arn"]}],
    }, {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}
    # WHEN its wildcard findings are listed
    findings = list(wildcard_findings(document))
    # THEN they use cdk-nag's flattened form, and Deny statements are not findings
    assert findings == [
        "Action::kms:GenerateDataKey*",
        "Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/gpu/*",
    ]
    assert flatten_reference({"Fn::Sub": "cdk-${AWS::AccountId}"}) == "cdk-<AWS::AccountId>"


@pytest.mark.parametrize("finding", [
    "Action::s3:*",
    "Action::iam:*",
    "Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/*",
    "Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:*",
    "Resource::arn:<AWS::Partition>:dynamodb:<AWS::Region>:<AWS::AccountId>:table/*",
])
def test_an_unreviewed_wildcard_is_never_acknowledged(finding: str) -> None:
    # GIVEN a wildcard no reviewed pattern covers (any cluster's tasks, every table, every action)
    # THEN it gets no reason, so cdk-nag fails the synthesis
    assert reviewed_reason(finding) is None


def test_every_reviewed_pattern_is_used(default_synth: Synth, turned: Synth) -> None:
    # GIVEN the wildcard findings of both stacks
    findings = {
        finding
        for synth in (default_synth, turned)
        for type_name in IDENTITY_POLICY_TYPES
        for resource in synth.resources(type_name).values()
        for finding in wildcard_findings(resource["Properties"]["PolicyDocument"])
    }
    # THEN no reviewed pattern is stale
    import re

    unused = [pattern for pattern, _reason in REVIEWED_WILDCARDS if not any(re.search(pattern, f) for f in findings)]
    assert unused == []
