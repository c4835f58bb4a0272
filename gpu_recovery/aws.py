"""boto3 clients built from settings, on demand (never at import time)."""

from __future__ import annotations

import os
from typing import Any

from botocore.config import Config

from gpu_recovery.settings import Settings

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class AwsClients:
    def __init__(self, settings: Settings, *, session: Any | None = None) -> None:
        import boto3  # boto3 import costs ~150 ms; keep it off the CLI's --help path

        self.settings = settings
        self._session: Any = session or boto3.session.Session()
        self._cache: dict[str, Any] = {}

    @property
    def session(self) -> Any:
        return self._session

    def client(self, service: str, *, retries: bool = True) -> Any:
        """A client; ``retries=False`` gives one without botocore's automatic retries, for calls that are
        not safe to repeat blindly (StartTask, reboots): recovery checks before it asks again."""
        name = service if retries else f"{service}/once"
        if name not in self._cache:
            self._cache[name] = self._make(service, retries)
        return self._cache[name]

    def _make(self, service: str, retries: bool = True) -> Any:
        attempts = 5 if retries else 1
        kwargs: dict[str, Any] = {
            "region_name": self.settings.region,
            "config": Config(retries={"total_max_attempts": attempts, "mode": "standard"}, max_pool_connections=32),
        }
        # The KCL daemon needs an HTTP/2 Kinesis locally (kinesis-local); the Python side shares it.
        endpoint = (service == "kinesis" and self.settings.kinesis_endpoint_url) or self.settings.endpoint_url
        if endpoint:
            kwargs["endpoint_url"] = endpoint
            if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
                kwargs.update(LOCAL_CREDENTIALS)  # a local endpoint needs some credentials, never real ones
        return self._session.client(service, **kwargs)
