"""Alarms on what stops recovery or loses events, all to the topic, and one dashboard.

Custom metrics live in namespace ``GpuRecovery`` without dimensions; the consumers publish them.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import InfraConfig
from infra.permissions import METRIC_NAMESPACE

PARKED_RECORDS = "ParkedRecords"
FAILED_ACTIONS = "FailedActions"
OPEN_INCIDENTS = "OpenIncidents"
PERIOD = Duration.minutes(5)


def custom_metric(name: str, statistic: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(namespace=METRIC_NAMESPACE, metric_name=name, statistic=statistic, period=PERIOD)


class Operations(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stream: kinesis.Stream,
                 dead_letter_queue: sqs.IQueue, topic: sns.ITopic, services: dict[str, ecs.FargateService],
                 desired_counts: dict[str, int], config: InfraConfig, name_prefix: str,
                 chat_topic: sns.ITopic | None = None) -> None:
        super().__init__(scope, construct_id)
        iterator_age = stream.metric_get_records_iterator_age_milliseconds(
            statistic="Maximum", period=Duration.minutes(1)
        )
        dlq_depth = dead_letter_queue.metric_approximate_number_of_messages_visible(statistic="Maximum", period=PERIOD)
        parked = custom_metric(PARKED_RECORDS, "Sum")
        failed = custom_metric(FAILED_ACTIONS, "Sum")
        incidents = custom_metric(OPEN_INCIDENTS, "Maximum")
        self.alarms = [
            self._alarm("IteratorAge", iterator_age, config.iterator_age_alarm_seconds * 1000, 3,
                        "Consumers are falling behind the stream (oldest unread record, ms)"),
            self._alarm("DeadLetters", dlq_depth, 1, 1,
                        "ECS events EventBridge could not put into the stream are in the dead-letter queue"),
            self._alarm("ParkedRecords", parked, 1, 1, "Records were parked as malformed or suspect"),
            self._alarm("FailedActions", failed, 1, 1, "A recovery action (ECS, EC2, SSM, SNS call) failed"),
            self._alarm("OpenIncidents", incidents, config.open_incidents_alarm_threshold, 1,
                        "More node incidents are open at once than expected"),
        ]
        # Firehose reads the stream too, so a dead consumer does not show in the iterator age.
        for name, service in services.items():
            if desired_counts.get(name, 0) > 0:
                self.alarms.append(self._consumer_down(name, service))
        # The chat topic too: Amazon Q Developer in chat applications renders CloudWatch alarms natively.
        for alarm in self.alarms:
            for target in (topic, *([chat_topic] if chat_topic else [])):
                alarm.add_alarm_action(actions.SnsAction(target))
                alarm.add_ok_action(actions.SnsAction(target))
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{name_prefix}-operations")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Stream in", left=[stream.metric_incoming_records(period=PERIOD)]),
            cloudwatch.GraphWidget(title="Iterator age (ms)", left=[iterator_age]),
            cloudwatch.GraphWidget(title="Dead-letter queue", left=[dlq_depth]),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Parked records / failed actions", left=[parked, failed]),
            cloudwatch.GraphWidget(title="Open incidents", left=[incidents]),
            cloudwatch.GraphWidget(title="Consumers CPU %",
                                   left=[service.metric_cpu_utilization() for service in services.values()]),
        )
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24))

    def _alarm(self, construct_id: str, metric: cloudwatch.Metric, threshold: float, periods: int,
               description: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # No data means nothing parked, nothing failed, no incident: not an alarm.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )

    def _consumer_down(self, name: str, service: ecs.FargateService) -> cloudwatch.Alarm:
        running = cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={"ClusterName": service.cluster.cluster_name, "ServiceName": service.service_name},
            statistic="Minimum",
            period=Duration.minutes(1),
        )
        return cloudwatch.Alarm(
            self,
            f"{name.capitalize()}Down",
            metric=running,
            threshold=1,
            evaluation_periods=5,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            # Container Insights reports every minute; silence means the service is gone.
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            alarm_description=f"No {name} consumer task has been running for 5 minutes: its events wait unread",
        )
