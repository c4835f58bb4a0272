"""Analytics and the long archive: an enhanced fan-out consumer for subscribers, and Firehose to S3.

Kinesis keeps at most 365 days; the archive keeps the rest, as newline-delimited JSON (one stream
record per line), gzip, partitioned by date, so `gpu-recovery replay --source s3://...` can read it.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import InfraConfig
from infra.encryption import log_group

ARCHIVE_PREFIX = "events/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
FIREHOSE_CIDR_MAPPING = "@aws-cdk--aws-kinesisfirehose.CidrBlocks"
ERROR_PREFIX = "errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"


class Analytics(Construct):
    """The registered enhanced fan-out consumer that subscribers (`gpu-recovery tail`) read through."""

    def __init__(self, scope: Construct, construct_id: str, *, stream: kinesis.IStream, name_prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.consumer = kinesis.StreamConsumer(
            self, "Subscribers", stream=stream, stream_consumer_name=f"{name_prefix}-subscribers"
        )
        CfnOutput(
            self,
            "SubscriberConsumerArn",
            value=self.consumer.stream_consumer_arn,
            description="Enhanced fan-out consumer ARN for subscribers (gpu-recovery tail --consumer-arn)",
        )


class Archive(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stream: kinesis.IStream, key: kms.IKey,
                 config: InfraConfig, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        # Server access logs cannot go to an SSE-KMS bucket: this one uses S3-managed keys.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(365),
                                              noncurrent_version_expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="archive/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="archive-to-glacier",
                    transitions=[s3.Transition(storage_class=s3.StorageClass.GLACIER,
                                               transition_after=Duration.days(config.archive_glacier_after_days))],
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            # Years of history: never deleted with the stack.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.delivery_logs = log_group(self, "DeliveryLogs", key=key, retention=log_retention)
        self.delivery_stream = firehose.DeliveryStream(
            self,
            "Delivery",
            source=firehose.KinesisStreamSource(stream),
            destination=firehose.S3Bucket(
                self.bucket,
                data_output_prefix=ARCHIVE_PREFIX,
                error_output_prefix=ERROR_PREFIX,
                compression=firehose.Compression.GZIP,
                buffering_interval=Duration.minutes(5),
                buffering_size=Size.mebibytes(64),
                encryption_key=key,
                # One record per line, so the archive reads as JSON Lines.
                processors=[firehose.AppendDelimiterToRecordProcessor()],
                logging_config=firehose.EnableLogging(self.delivery_logs),
            ),
        )
        # The Firehose module adds a region -> CIDR mapping for destinations that need allow-listing
        # (Redshift, HTTP); an S3 destination never reads it, and an unused mapping fails cfn-lint W7001.
        Stack.of(self).node.try_remove_child(FIREHOSE_CIDR_MAPPING)
