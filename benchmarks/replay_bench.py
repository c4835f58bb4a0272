"""Replay benchmarks: file replay throughput and peak memory; stream replay versus a bare read.

    python -m benchmarks.replay_bench                      # 100k and 300k events, file replay
    python -m benchmarks.replay_bench --events 1000000     # the issue's 1M figure (a few minutes)
    python -m benchmarks.replay_bench --stream 50000       # also stream vs bare read on embedded moto

The synthetic history is deterministic (seeded) and has a fixed population (``n_nodes`` nodes,
``n_jobs`` jobs of ``n_nodes // n_jobs`` ranks): more events means more versions of the same
entities, so peak memory must stay flat as the event count grows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/gpu-training"
T0 = datetime(2026, 1, 5, 0, 0, 0, tzinfo=UTC)
SEED = 20261128

_CHILD = (
    "import sys, resource\n"
    "from gpu_recovery.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "peak = None\n"
    "try:\n"
    "    peak = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "except (OSError, StopIteration):\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print(f'__PEAK_RSS_KIB__ {peak}', file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


# --- a deterministic synthetic history --------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class History:
    """ECS events and our events over a fixed fleet, in time order, from a seed."""

    def __init__(self, n_nodes: int, n_jobs: int, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.n_nodes = n_nodes
        self.ranks = max(1, n_nodes // max(1, n_jobs))
        self.n_jobs = n_jobs
        self.node_version = [0] * n_nodes
        self.task_version = [0] * (n_jobs * self.ranks)
        self.clock = T0
        self.serial = 0

    def node_arn(self, n: int) -> str:
        return f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/gpu-training/{n:032x}"

    def task_arn(self, t: int) -> str:
        return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gpu-training/{t:032x}"

    def events(self, n_events: int) -> Iterator[dict[str, Any]]:
        kinds = ("task", "node", "health", "hc", "node_state", "job_state", "decision", "outcome", "bad")
        weights = (45, 10, 5, 10, 10, 8, 6, 5, 1)
        for _ in range(n_events):
            self.clock += timedelta(milliseconds=50)
            self.serial += 1
            kind = self.rng.choices(kinds, weights)[0]
            yield getattr(self, f"_{kind}")()

    def _task(self) -> dict[str, Any]:
        t = self.rng.randrange(len(self.task_version))
        self.task_version[t] += 1
        version = self.task_version[t]
        job, rank = divmod(t, self.ranks)
        status = ("PROVISIONING", "PENDING", "RUNNING", "RUNNING", "STOPPED")[version % 5]
        container: dict[str, Any] = {"name": "trainer", "lastStatus": status, "gpuIds": [str(g) for g in range(8)]}
        detail: dict[str, Any] = {
            "clusterArn": CLUSTER, "taskArn": self.task_arn(t),
            "containerInstanceArn": self.node_arn((job * self.ranks + rank) % self.n_nodes),
            "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/llm-train:7",
            "lastStatus": status, "desiredStatus": "STOPPED" if status == "STOPPED" else "RUNNING",
            "version": version, "containers": [container], "group": f"job:{job:04d}", "startedBy": "launcher",
            "launchType": "EC2", "createdAt": _iso(T0), "updatedAt": _iso(self.clock),
            "overrides": {"containerOverrides": [{"name": "trainer", "environment": [
                {"name": "RANK", "value": str(rank)}]}]},
        }
        if status == "STOPPED":
            container["exitCode"] = self.rng.choice((0, 1, 137))
            detail["stoppedAt"] = _iso(self.clock)
            detail["stopCode"] = "EssentialContainerExited"
        return self._aws("ECS Task State Change", self.task_arn(t), detail)

    def _node(self) -> dict[str, Any]:
        n = self.rng.randrange(self.n_nodes)
        self.node_version[n] += 1
        detail = {
            "clusterArn": CLUSTER, "containerInstanceArn": self.node_arn(n), "ec2InstanceId": f"i-{n:017x}",
            "agentConnected": self.node_version[n] % 7 != 0, "status": "ACTIVE",
            "version": self.node_version[n], "updatedAt": _iso(self.clock),
            "attributes": [{"name": "ecs.instance-type", "value": "p5.48xlarge"}],
            "registeredResources": [{"name": "GPU", "type": "STRINGSET",
                                     "stringSetValue": [f"GPU-{n:04x}-{g}" for g in range(8)]}],
        }
        return self._aws("ECS Container Instance State Change", self.node_arn(n), detail)

    def _health(self) -> dict[str, Any]:
        n = self.rng.randrange(self.n_nodes)
        status = self.rng.choice(("OK", "OK", "IMPAIRED"))
        detail = {"clusterArn": CLUSTER, "containerInstanceArn": self.node_arn(n), "ec2InstanceId": f"i-{n:017x}",
                  "overallStatus": status, "healthChecks": [{"type": "ACCELERATED_COMPUTE", "status": status}]}
        return self._aws("ECS Container Instance Health Change", self.node_arn(n), detail)

    def _aws(self, detail_type: str, resource: str, detail: dict[str, Any]) -> dict[str, Any]:
        return {"version": "0", "id": str(uuid.UUID(int=self.rng.getrandbits(128))), "detail-type": detail_type,
                "source": "aws.ecs", "account": ACCOUNT, "time": _iso(self.clock), "region": REGION,
                "resources": [resource], "detail": detail}

    def _ours(self, event_type: str, data: dict[str, Any], subject: dict[str, Any], version: int = 1
              ) -> dict[str, Any]:
        return {"event_id": f"ev-{self.serial:012d}", "type": event_type, "schema_version": version,
                "time": _iso(self.clock), "source": "gpu-recovery/bench", "subject": subject,
                "causation_id": None, "data": data}

    def _incident(self, n: int) -> str:
        return f"inc-{n:05d}-{self.serial // 5000:06d}"

    def _hc(self) -> dict[str, Any]:
        n = self.rng.randrange(self.n_nodes)
        if self.rng.random() < 0.2:  # an old agent: schema v1, upcast on read
            data: dict[str, Any] = {"node_arn": self.node_arn(n), "level": 2,
                                    "result": self.rng.choice(("pass", "fail")),
                                    "xids": [48, 48] if self.rng.random() < 0.5 else []}
            return self._ours("HealthCheckReported", data, {"node": self.node_arn(n)}, version=1)
        verdict = self.rng.choice(("healthy", "healthy", "hardware_fault", "application_fault"))
        data = {"node_arn": self.node_arn(n), "level": 2, "verdict": verdict, "incident_id": self._incident(n),
                "recommended_action": "reboot" if verdict == "hardware_fault" else "none",
                "xids": [{"xid": 79, "count": 1}] if verdict == "hardware_fault" else []}
        return self._ours("HealthCheckReported", data, {"node": self.node_arn(n)}, version=2)

    def _node_state(self) -> dict[str, Any]:
        n = self.rng.randrange(self.n_nodes)
        state = self.rng.choice(("HEALTHY", "SUSPECT", "CHECKING", "REBOOTING", "VERIFYING", "QUARANTINED"))
        data = {"node_arn": self.node_arn(n), "state": state, "reason": "bench", "incident_id": self._incident(n)}
        return self._ours("NodeStateChanged", data, {"node": self.node_arn(n), "incident": self._incident(n)})

    def _job_state(self) -> dict[str, Any]:
        j = self.rng.randrange(self.n_jobs)
        state = self.rng.choice(("RUNNING", "INTERRUPTED", "RECOVERING", "RESTARTING"))
        data = {"job_id": f"job:{j:04d}", "state": state, "reason": "bench", "restart_count": self.serial % 3}
        return self._ours("JobStateChanged", data, {"job": f"job:{j:04d}"})

    def _decision(self) -> dict[str, Any]:
        t = self.rng.randrange(len(self.task_version))
        job = t // self.ranks
        data = {"idempotency_key": f"k-{self.serial}", "step": "stop-siblings", "job_id": f"job:{job:04d}",
                "action": {"type": "StopTask", "target": self.task_arn(t)}, "reason": "bench"}
        return self._ours("DecisionRecorded", data, {"job": f"job:{job:04d}", "task": self.task_arn(t)})

    def _outcome(self) -> dict[str, Any]:
        n = self.rng.randrange(self.n_nodes)
        data = {"idempotency_key": f"k-{self.serial}", "status": "succeeded",
                "action": {"type": "RebootInstances", "target": f"i-{n:017x}"}}
        return self._ours("ActionOutcome", data, {"node": self.node_arn(n)})

    def _bad(self) -> dict[str, Any]:
        return {"event_id": f"ev-{self.serial}", "type": "SomethingNew", "schema_version": 1,
                "time": _iso(self.clock), "source": "gpu-recovery/future", "data": {}}


def write_history(path: Path, n_events: int, n_nodes: int = 2000, n_jobs: int = 500) -> int:
    """Write the synthetic history as JSON Lines; returns the bytes written."""
    history = History(n_nodes, n_jobs)
    with path.open("w", encoding="utf-8") as out:
        for event in history.events(n_events):
            out.write(json.dumps(event, separators=(",", ":")))
            out.write("\n")
    return path.stat().st_size


# --- file replay ------------------------------------------------------------------------------------


def bench_file_replay(n_events: int, n_nodes: int = 2000, n_jobs: int = 500) -> dict[str, Any]:
    """Replay a synthetic history file into ``file:`` in a subprocess: records/s and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        history, output = Path(tmp) / "history.jsonl", Path(tmp) / "state.json"
        size = write_history(history, n_events, n_nodes, n_jobs)
        command = [sys.executable, "-c", _CHILD, "replay", "--source", f"file:{history}",
                   "--target", f"file:{output}", "--no-progress", "--json"]
        cpu_before = _children_cpu()
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
        if done.returncode != 0:
            raise RuntimeError(f"replay failed ({done.returncode}): {done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        peak_kib = next(int(line.split()[1]) for line in done.stderr.splitlines()
                        if line.startswith("__PEAK_RSS_KIB__"))
        stats = summary["stats"]
        return {
            "benchmark": "file_replay", "events": n_events, "nodes": n_nodes, "jobs": n_jobs,
            "history_mib": round(size / 2**20, 1), "replay_seconds": stats["seconds"],
            "events_per_s": round(stats["records"] / stats["seconds"]) if stats["seconds"] else None,
            "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            # CPU time is the steadier figure on a shared machine; wall time includes start-up.
            "events_per_cpu_s": round(n_events / cpu) if cpu else None,
            "peak_rss_mib": round(peak_kib / 1024, 1),
            "items": summary["items"], "malformed": stats["malformed"],
            "output_mib": round(output.stat().st_size / 2**20, 2),
        }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- stream replay vs a bare read ---------------------------------------------------------------------


def bench_stream_replay(endpoint_url: str, n_events: int, shards: int = 4) -> dict[str, Any]:
    """Replay from a stream on ``endpoint_url`` versus a bare read of the same records (same run).

    Both read every shard through the reader ``gpu-recovery replay`` uses by default (a child
    process, threads per shard); the bare read only counts the records, the replay decodes, folds
    and writes the state to a file. Also the same pair with the reader in threads of this process.
    Interleaved, best of three each.
    """
    from functools import partial

    import boto3

    kinesis_factory = partial(boto3.client, "kinesis", endpoint_url=endpoint_url, region_name=REGION,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
    kinesis = kinesis_factory()
    stream = f"replay-bench-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    _fill_stream(kinesis, stream, n_events)
    now = datetime.now(UTC) + timedelta(seconds=1)
    result: dict[str, Any] = {"benchmark": "stream_replay", "events": n_events, "shards": shards}
    for reader in ("process", "thread"):
        def source(reader: str = reader) -> Any:
            from replay.sources import ProcessStreamSource, StreamSource

            if reader == "process":
                return ProcessStreamSource(kinesis_factory, stream, now=now)
            return StreamSource(kinesis, stream, now=now)

        # Interleaved, best of three: on a shared machine both sides then see the same neighbours.
        runs = [(_timed_bare(source, n_events), _timed_replay(source, n_events)) for _ in range(3)]
        bare_s, replay_s = min(b for b, _ in runs), min(r for _, r in runs)
        result[reader] = {"bare_read_events_per_s": round(n_events / bare_s),
                          "replay_events_per_s": round(n_events / replay_s), "ratio": round(bare_s / replay_s, 3)}
    kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    return {**result, "ratio": result["process"]["ratio"], "target_ratio": 0.8}


def _timed_bare(source: Any, n_events: int) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in source().records())
    if count != n_events:
        raise RuntimeError(f"bare read saw {count} of {n_events} records")
    return time.perf_counter() - started


def _timed_replay(source: Any, n_events: int) -> float:
    from consumers.core.projection import ProjectionConfig
    from replay.rebuild import rebuild
    from replay.targets import write_file

    started = time.perf_counter()
    rebuilt = rebuild(source().records(), ProjectionConfig())
    with tempfile.TemporaryDirectory() as tmp:
        write_file(rebuilt.state, str(Path(tmp) / "state.json"))
    if rebuilt.stats.records != n_events:
        raise RuntimeError(f"replay saw {rebuilt.stats.records} of {n_events} records")
    return time.perf_counter() - started


def _fill_stream(kinesis: KinesisClient, stream: str, n_events: int) -> None:
    from consumers.adapters.kinesis import KinesisStreamWriter

    writer = KinesisStreamWriter(kinesis, stream)  # PutRecords, the rejected records again with backoff
    batch: list[tuple[bytes, str]] = []
    for event in History(2000, 500).events(n_events):
        key = str(event.get("resources", [""])[0] if "detail" in event else event.get("subject", {}).get("node")
                  or event.get("subject", {}).get("job") or event["event_id"])
        batch.append((json.dumps(event, separators=(",", ":")).encode(), key))
        if len(batch) == 500:
            writer.put_raw(batch)
            batch = []
    if batch:
        writer.put_raw(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="*", default=[100_000, 300_000],
                        help="file replay sizes (default: 100000 300000)")
    parser.add_argument("--stream", type=int, default=0, metavar="N",
                        help="also replay N events from a stream on an embedded moto server")
    parser.add_argument("--endpoint-url", help="use this endpoint for --stream instead of an embedded one")
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="run the embedded moto server in its own process (default) or in this one, "
                        "where it shares the GIL with the replay being measured")
    args = parser.parse_args(argv)
    for n in args.events:
        print(json.dumps(bench_file_replay(n)), flush=True)
    if args.stream:
        if args.endpoint_url:
            result = bench_stream_replay(args.endpoint_url, args.stream)
        elif args.server == "thread":
            from local.embedded_aws import EmbeddedAws

            with EmbeddedAws() as aws:
                result = bench_stream_replay(aws.endpoint_url, args.stream)
        else:
            with embedded_server_process() as endpoint:
                result = bench_stream_replay(endpoint, args.stream)
        print(json.dumps({**result, "server": args.endpoint_url or args.server}), flush=True)
    return 0


@contextlib.contextmanager
def embedded_server_process() -> Iterator[str]:
    """The embedded moto server (local.embedded_aws) in a child process, so it has its own GIL."""
    from local.embedded_aws import free_port

    port = free_port()
    code = ("import time; from local.embedded_aws import EmbeddedAws\n"
            f"EmbeddedAws({port}).start()\n"
            "while True: time.sleep(3600)\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(endpoint)
        yield endpoint
    finally:
        child.terminate()
        child.wait(timeout=10)


def _wait_for(endpoint: str, attempts: int = 100) -> None:
    import urllib.request

    for _ in range(attempts):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the moto server at {endpoint} did not come up")


if __name__ == "__main__":
    sys.exit(main())
