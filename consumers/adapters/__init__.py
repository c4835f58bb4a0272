"""Adapters: the core's ports implemented over DynamoDB, Kinesis, ECS, EC2, SSM, SNS, or memory."""
