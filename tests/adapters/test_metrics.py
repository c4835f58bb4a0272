"""CloudWatch metrics for the alarms: the names and namespace the stack's alarms watch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from consumers.adapters.metrics import NAMESPACE, CloudWatchMetrics


def test_counts_and_gauges_are_published_once_a_minute(aws: None) -> None:
    client = boto3.client("cloudwatch", region_name="us-east-1")
    now = [0.0]
    metrics = CloudWatchMetrics(client, interval_s=60, monotonic=lambda: now[0])
    # WHEN two parked records are counted and a gauge set within the minute
    metrics.count("ParkedRecords", 1)
    metrics.count("ParkedRecords", 1)
    metrics.gauge("OpenIncidents", 3)
    metrics.flush()
    assert client.list_metrics(Namespace=NAMESPACE)["Metrics"] == []
    # THEN after the minute they are published, with no dimensions (the alarms use none)
    now[0] = 61
    metrics.flush()
    names = sorted(m["MetricName"] for m in client.list_metrics(Namespace=NAMESPACE)["Metrics"])
    assert names == ["OpenIncidents", "ParkedRecords"]
    stats = client.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="ParkedRecords", Statistics=["Sum"], Period=60,
        StartTime=datetime.now(UTC) - timedelta(minutes=5), EndTime=datetime.now(UTC) + timedelta(minutes=5))
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 2


def test_a_failing_publish_never_raises(aws: None) -> None:
    class Broken:
        def put_metric_data(self, **_: Any) -> None:
            raise RuntimeError("throttled")

    metrics = CloudWatchMetrics(Broken(), interval_s=0)
    metrics.count("FailedActions", 1)
    metrics.flush()
