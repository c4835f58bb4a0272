"""``gpu-recovery node release`` and ``gpu-recovery job cancel``: people in the loop, as events on the stream.

On the embedded AWS (moto's server): NODE in each of its shapes resolves to
the container instance ARN in the cluster; exactly one ``OperatorRequested`` lands on the stream, keyed by
the node or the job; a node that is not in the cluster is one line and nothing sent. Then the bridge to the
pure recovery core: the bytes the command writes are what recovery acts on (a release comes back only
through a passing check; a cancel ends recovery with nothing restarted). The end-to-end run with the real
consumers is tests/test_operator_scenario.py.
"""

from __future__ import annotations

import getpass
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from analytics.view import EventFilter, line_of, view_of
from consumers.adapters.kinesis import envelope_bytes
from consumers.adapters.kinesis_reader import list_shards, read_shard
from consumers.core.clocktext import iso
from consumers.core.recovery.decide import OperatorInput
from events_schema.decode import decode
from events_schema.envelope import OurEvent
from events_schema.events import OperatorRequested
from gpu_recovery.aws import AwsClients
from gpu_recovery.cli import main
from gpu_recovery.commands.operator import request_event
from gpu_recovery.settings import load_settings
from tests.core.recovery_world import World
from tests.factories import at, node_arn

MOTO_CALLER = "arn:aws:sts::123456789012:user/moto"  # who moto's STS says the caller is


@dataclass(frozen=True)
class Stack:
    endpoint: str
    stream: str
    cluster: str
    kinesis: Any
    ecs: Any
    ec2: Any


@dataclass(frozen=True)
class Registered:
    arn: str
    instance_id: str

    @property
    def id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Put:
    partition_key: str
    event: OurEvent


@pytest.fixture
def stack(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The embedded AWS with a stream and a cluster of this test's own (the commands need nothing else: no
    table, no topic)."""
    suffix = uuid.uuid4().hex[:12]
    for name, value in {"GPU_RECOVERY_STREAM_NAME": f"ops-{suffix}", "ECS_CLUSTER_NAME": f"gpu-{suffix}",
                        "GPU_RECOVERY_STREAM_SHARDS": "2"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(endpoint_url=moto_server)
    clients = AwsClients(settings)
    clients.client("kinesis").create_stream(StreamName=settings.stream_name, ShardCount=settings.stream_shards)
    clients.client("ecs").create_cluster(clusterName=settings.cluster_name)
    return Stack(moto_server, settings.stream_name, settings.cluster_name, clients.client("kinesis"),
                 clients.client("ecs"), clients.client("ec2"))


def register(stack: Stack, *, state: str = "QUARANTINED", cluster: str | None = None) -> Registered:
    """A GPU node in the cluster, as recovery leaves a quarantined one: DRAINING, its state attribute set."""
    cluster = cluster or stack.cluster
    instance_id = stack.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                          InstanceType="p4d.24xlarge")["Instances"][0]["InstanceId"]
    document = json.dumps({"instanceId": instance_id, "region": "us-east-1", "instanceType": "p4d.24xlarge",
                           "accountId": "123456789012"})
    arn = stack.ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=document
                                                )["containerInstance"]["containerInstanceArn"]
    stack.ecs.put_attributes(cluster=cluster, attributes=[{"name": "gpu-recovery.state", "value": state,
                                                           "targetId": arn}])
    stack.ecs.update_container_instances_state(cluster=cluster, containerInstances=[arn], status="DRAINING")
    return Registered(arn, instance_id)


def on_stream(stack: Stack) -> list[Put]:
    found = []
    for shard in list_shards(stack.kinesis, stack.stream):
        for batch in read_shard(stack.kinesis, stack.stream, shard["ShardId"]):
            found += [Put(r.partition_key, event) for r in batch.records
                      if isinstance(event := decode(r.data), OurEvent)]
    return found


# --- node release ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["arn", "id", "instance_id"])
def test_release_puts_one_request_for_the_resolved_node(shape: str, stack: Stack,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a quarantined node and another one in the cluster
    register(stack)
    node = register(stack)
    named = {"arn": node.arn, "id": node.id, "instance_id": node.instance_id}[shape]
    # WHEN a person releases it, naming it by its ARN, its id or its EC2 instance id
    code = main(["node", "release", named, "--reason", "GPU 3 reseated,  ticket OPS-7", "--endpoint-url",
                 stack.endpoint])
    out = capsys.readouterr().out
    # THEN exactly one OperatorRequested is on the stream: that node's ARN, the caller from STS, the reason
    assert code == 0
    (put,) = on_stream(stack)
    data = put.event.data
    assert isinstance(data, OperatorRequested)
    assert (data.request, data.node_arn, data.job_id, data.requested_by, data.reason) == (
        "release_node", node.arn, None, MOTO_CALLER, "GPU 3 reseated, ticket OPS-7")
    # AND it is keyed by the node, so it shares the shard of the node's own events
    assert put.partition_key == node.arn and put.event.envelope.source == "gpu-recovery/cli"
    # AND the person is told what was asked, what ECS shows, and that a check comes first
    assert f"asked recovery to release node {node.arn}" in out
    assert "ECS shows it DRAINING, gpu-recovery.state=QUARANTINED" in out
    assert "returns to service only if the check passes" in out and f"audit --node {node.id}" in out


@pytest.mark.parametrize("shape", ["unknown instance", "unknown id", "arn in another cluster", "another cluster"])
def test_a_node_not_in_the_cluster_is_one_line_exit_2_and_nothing_sent(shape: str, stack: Stack,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a node in the cluster, and one in a second cluster
    ours = register(stack)
    stack.ecs.create_cluster(clusterName=f"{stack.cluster}-b")
    theirs = register(stack, cluster=f"{stack.cluster}-b")
    named = {"unknown instance": "i-0123456789abcdef0", "unknown id": "8d0d8ec28ef34f3a9c1b2d3e4f5a6b7c",
             "arn in another cluster": ours.arn.replace(f"/{stack.cluster}/", f"/{stack.cluster}-b/"),
             "another cluster": theirs.instance_id}[shape]
    # WHEN released in the first cluster
    code = main(["node", "release", named, "--endpoint-url", stack.endpoint])
    err = capsys.readouterr().err
    # THEN one line names the node and the cluster, exit 2, and nothing is on the stream
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"gpu-recovery: error: node {named} is not in cluster {stack.cluster} (give ")
    assert on_stream(stack) == []


@pytest.mark.parametrize("shape", ["instance_id", "id"])
def test_a_cluster_that_does_not_exist_is_one_line_exit_2(shape: str, stack: Stack,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a node, WHEN released in a cluster that does not exist (a typo in --cluster)
    node = register(stack)
    named = {"instance_id": node.instance_id, "id": node.id}[shape]
    code = main(["node", "release", named, "--cluster", "no-such-cluster", "--endpoint-url", stack.endpoint])
    err = capsys.readouterr().err
    # THEN one line that names the cluster (ECS's ClusterNotFoundException, or no such node in it), and nothing sent
    assert code == 2 and err.count("\n") == 1 and "no-such-cluster" in err
    assert on_stream(stack) == []


# --- job cancel ----------------------------------------------------------------------------------------


def test_cancel_puts_one_request_keyed_by_the_job(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN a person cancels a job's recovery
    code = main(["job", "cancel", "job:llama-70b-run-42", "--reason", "the run is over budget",
                 "--endpoint-url", stack.endpoint])
    out = capsys.readouterr().out
    # THEN exactly one OperatorRequested, keyed by the job id, with who and why
    assert code == 0
    (put,) = on_stream(stack)
    data = put.event.data
    assert isinstance(data, OperatorRequested)
    assert (data.request, data.job_id, data.node_arn, data.requested_by, data.reason) == (
        "cancel_job", "job:llama-70b-run-42", None, MOTO_CALLER, "the run is over budget")
    assert put.partition_key == "job:llama-70b-run-42"
    assert "STOPPED_BY_USER" in out and "nothing is restarted" in out and "audit --job job:llama-70b-run-42" in out


def test_a_stream_that_does_not_exist_is_one_line_exit_2(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["job", "cancel", "job:a", "--stream-name", "no-such-stream", "--endpoint-url", stack.endpoint])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "ResourceNotFoundException" in err and err.rstrip().endswith("(check --region, --endpoint-url, "
                                                                      "--stream-name and the AWS credentials' access)")


class _NoSts(BaseHTTPRequestHandler):
    """An endpoint that is up but has no STS (a local stack of Kinesis and ECS only): every call refused."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                b"<Message>no STS here</Message></Error></ErrorResponse>")
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def no_sts() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoSts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_without_sts_the_os_user_is_recorded_and_the_person_told(stack: Stack, no_sts: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN STS cannot answer (every service but Kinesis at an endpoint that refuses)
    monkeypatch.setenv("GPU_RECOVERY_KINESIS_ENDPOINT_URL", stack.endpoint)
    # WHEN a person cancels a job
    code = main(["job", "cancel", "job:a", "--endpoint-url", no_sts])
    err = capsys.readouterr().err
    # THEN the request still goes, recording the OS user, marked as not verified; and stderr says why
    assert code == 0
    (put,) = on_stream(stack)
    assert put.event.data.requested_by == f"{getpass.getuser()} (OS user, not verified)"  # type: ignore[attr-defined]
    assert err.startswith("note: STS could not say who you are (") and "AccessDenied" in err
    assert f"records the OS user {getpass.getuser()!r}, which nothing verifies" in err


# --- what people see of it ---------------------------------------------------------------------------


def test_audit_of_the_stream_shows_the_release_with_who_and_why(stack: Stack,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    node = register(stack)
    assert main(["node", "release", node.instance_id, "--reason", "GPU swapped", "--endpoint-url",
                 stack.endpoint]) == 0
    capsys.readouterr()
    assert main(["audit", "--node", node.id, "--endpoint-url", stack.endpoint, "--reader", "thread", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert (row["category"], row["why"]) == ("request", "GPU swapped")
    assert row["what"] == f"{MOTO_CALLER} asked to release node {node.id} (back to service, through a check)"


def test_tail_shows_a_request_readably_and_finds_it_by_node_or_job() -> None:
    release = request_event(OperatorRequested(request="release_node", node_arn=node_arn(2), requested_by="alice",
                                              reason="GPU swapped"), now=at(0))
    cancel = request_event(OperatorRequested(request="cancel_job", job_id="job:a", requested_by="bob"), now=at(5))
    views = [view_of(decode(envelope_bytes(e))) for e in (release, cancel)]
    assert [line_of(v).split(" ", 1)[1].split() for v in views] == [
        ["OperatorRequested", "node=node0002", "release", "node", "node0002", "(through", "a", "check)", "asked",
         "by", "alice:", "GPU", "swapped"],
        ["OperatorRequested", "job=job:a", "cancel", "the", "recovery", "of", "job", "job:a", "asked", "by", "bob"]]
    assert [EventFilter.of(nodes=["node0002"]).matches(v) for v in views] == [True, False]
    assert [EventFilter.of(jobs=["job:a"]).matches(v) for v in views] == [False, True]


# --- what recovery does with it (the pure core, fed the bytes the command writes) ---------------------------


def as_recovery_reads_it(data: OperatorRequested, world: World) -> OperatorInput:
    """The command's envelope, through the stream's bytes and the decoder, as the consumer's input."""
    event = decode(envelope_bytes(request_event(data, now=world.now)))
    assert isinstance(event, OurEvent) and isinstance(event.data, OperatorRequested)
    return OperatorInput(event.data, iso(event.time))


def quarantined(world: World) -> None:
    """A 1-rank job on node 2 fails there; the check finds XID 79: the node is quarantined."""
    world.nodes(3)
    world.job([(2, 2)])
    world.fails(2, 2, when=100)
    world.settle_orders()
    world.report("hardware_fault", "quarantine", node=2, xids=[79])
    assert world.node(2).plan.repair == "QUARANTINED"


@pytest.mark.parametrize(("verdict", "action", "after"), [("healthy", "none", "HEALTHY"),
                                                          ("hardware_fault", "quarantine", "QUARANTINED")])
def test_a_release_returns_the_node_only_through_a_passing_check(verdict: str, action: str, after: str) -> None:
    world = World()
    quarantined(world)
    # WHEN the command's release reaches recovery
    world.run([as_recovery_reads_it(OperatorRequested(request="release_node", node_arn=node_arn(2),
                                                      requested_by=MOTO_CALLER, reason="reseated"), world)])
    world.settle_orders()
    # THEN the node is checked first, and the check's verdict decides
    assert world.node(2).plan.repair == "CHECKING"
    world.report(verdict, action, node=2, xids=[79] if verdict != "healthy" else [])
    assert world.node(2).plan.repair == after


def test_a_cancel_ends_the_jobs_recovery_and_nothing_restarts() -> None:
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=101)
    world.settle_orders()
    assert world.job_of().phase == "RECOVERING"
    # WHEN the command's cancel reaches recovery, and later the node's check passes
    world.run([as_recovery_reads_it(OperatorRequested(request="cancel_job", job_id="job:alpha",
                                                      requested_by=MOTO_CALLER), world)])
    world.settle_orders()
    world.report("healthy", node=2)
    world.settle_orders()
    # THEN the job is STOPPED_BY_USER, nothing was restarted, and the node's check still returned it
    assert world.job_of().phase == "STOPPED_BY_USER"
    assert world.job_of().plan.reason == f"cancelled by {MOTO_CALLER}"
    assert world.commands(step="restart") == []
    assert world.node(2).plan.repair == "HEALTHY"
