"""What the recovery, the CDK stack and the DCGM agent agree on about the health-check task, so that
the stack imports the contract and not the policy."""

from __future__ import annotations

# The task definition names its container this; the recovery's StartTask overrides name it back.
CHECK_CONTAINER = "healthcheck"
