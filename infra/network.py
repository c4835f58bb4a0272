"""Where the consumers run: a new VPC (private subnets, NAT, flow logs) or an existing one, no lookups."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import InfraConfig
from infra.encryption import log_group


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig, key: kms.IKey,
                 log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        if config.vpc_id:
            # Given attributes, not a lookup: synthesis stays offline.
            self.vpc: ec2.IVpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=config.vpc_id,
                availability_zones=list(config.vpc_availability_zones),
                private_subnet_ids=list(config.vpc_subnet_ids),
            )
        else:
            self.vpc = self._new_vpc(config, key, log_retention)
        self.subnets = ec2.SubnetSelection(subnets=self.vpc.private_subnets)

    def _new_vpc(self, config: InfraConfig, key: kms.IKey, log_retention: logs.RetentionDays) -> ec2.Vpc:
        flow_logs = log_group(self, "FlowLogs", key=key, retention=log_retention)
        return ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                        cidr_mask=20),
            ],
            # Table and archive traffic stays off the NAT.
            gateway_endpoints={
                "DynamoDb": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
            },
            flow_logs={
                "Rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )
