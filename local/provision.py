"""Create what the CDK stack would create, on a local endpoint: stream, tables, topics, cluster."""

from __future__ import annotations

from dataclasses import dataclass

from consumers.adapters.dynamodb import create_tables
from gpu_recovery.aws import AwsClients


@dataclass(frozen=True)
class Provisioned:
    stream_name: str
    topic_arn: str
    cluster_arn: str
    chat_topic_arn: str | None = None


def provision(clients: AwsClients) -> Provisioned:
    settings = clients.settings
    kinesis = clients.client("kinesis")
    existing = kinesis.list_streams().get("StreamNames", [])
    if settings.stream_name not in existing:
        kinesis.create_stream(StreamName=settings.stream_name, ShardCount=settings.stream_shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=settings.stream_name)
    create_tables(clients.client("dynamodb"), settings.table_names())
    topic = clients.client("sns").create_topic(
        Name=settings.sns_topic_name, Attributes={"DisplayName": settings.sns_topic_display_name}
    )
    chat_topic = None
    if settings.sns_chat_topic_name:  # the topic Amazon Q Developer in chat applications would read
        chat_topic = clients.client("sns").create_topic(Name=settings.sns_chat_topic_name)["TopicArn"]
    cluster = clients.client("ecs").create_cluster(clusterName=settings.cluster_name)
    return Provisioned(settings.stream_name, topic["TopicArn"], cluster["cluster"]["clusterArn"], chat_topic)
