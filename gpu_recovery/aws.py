"""boto3 clients built from settings, on demand (never at import time)."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config

from consumers.core.errors import ConfigError
from gpu_recovery.settings import Settings

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
CONNECT_TIMEOUT_S = 5


def check_endpoint(url: str, *, timeout_s: float = 3.0) -> None:
    """A custom endpoint must be a URL that answers now: fail at once with the fix, rather than after
    botocore's retries (a minute or more against an address that drops packets)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConfigError(f"endpoint {url!r} is not a URL: {exc} (fix --endpoint-url / AWS_ENDPOINT_URL)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"endpoint {url!r} is not an http(s) URL with a host "
                          "(fix --endpoint-url / AWS_ENDPOINT_URL, e.g. http://127.0.0.1:5000)")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach endpoint {url}: {exc.strerror or exc} (is the local stack running? check "
                          "--endpoint-url / AWS_ENDPOINT_URL / GPU_RECOVERY_KINESIS_ENDPOINT_URL)") from None


class AwsClients:
    def __init__(self, settings: Settings, *, session: Any | None = None) -> None:
        import boto3  # boto3 import costs ~150 ms; keep it off the CLI's --help path

        self.settings = settings
        self._session: Any = session or boto3.session.Session()
        self._cache: dict[str, Any] = {}
        self._checked: set[str] = set()

    @property
    def session(self) -> Any:
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._cache:
            self._cache[service] = self._make(service)
        return self._cache[service]

    def _make(self, service: str) -> Any:
        kwargs: dict[str, Any] = {
            "region_name": self.settings.region,
            "config": Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32,
                             connect_timeout=CONNECT_TIMEOUT_S),
        }
        # The KCL daemon needs an HTTP/2 Kinesis locally (kinesis-local); the Python side shares it.
        endpoint = (service == "kinesis" and self.settings.kinesis_endpoint_url) or self.settings.endpoint_url
        if endpoint:
            if endpoint not in self._checked:
                check_endpoint(endpoint)
                self._checked.add(endpoint)
            kwargs["endpoint_url"] = endpoint
            if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
                kwargs.update(LOCAL_CREDENTIALS)  # a local endpoint needs some credentials, never real ones
        return self._session.client(service, **kwargs)
