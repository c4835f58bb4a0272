"""The contract of the gpu-recovery stream: AWS event models, our own events, rules.

Nothing in this package does I/O; every consumer, the replay tool and the CDK stack depend on it.
"""
