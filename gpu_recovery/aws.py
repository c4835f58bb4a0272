"""boto3 clients built from settings, on demand (never at import time): nothing of boto3 is loaded until
the first client is asked for, so a command that reads only files never pays for it."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlsplit

from consumers.core.errors import ConfigError
from gpu_recovery.settings import Settings

if TYPE_CHECKING:
    from boto3.session import Session
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

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
    def __init__(self, settings: Settings, *, session: Session | None = None) -> None:
        self.settings = settings
        self._session = session
        self._cache: dict[str, Any] = {}
        self._checked: set[str] = set()

    @property
    def session(self) -> Session:
        if self._session is None:
            import boto3  # boto3 import costs ~150 ms: only when a client is wanted

            self._session = boto3.session.Session()
        return self._session

    @overload
    def client(self, service: Literal["autoscaling"], *, retries: bool = True) -> AutoScalingClient: ...

    @overload
    def client(self, service: Literal["cloudwatch"], *, retries: bool = True) -> CloudWatchClient: ...

    @overload
    def client(self, service: Literal["dynamodb"], *, retries: bool = True) -> DynamoDBClient: ...

    @overload
    def client(self, service: Literal["ec2"], *, retries: bool = True) -> EC2Client: ...

    @overload
    def client(self, service: Literal["ecs"], *, retries: bool = True) -> ECSClient: ...

    @overload
    def client(self, service: Literal["kinesis"], *, retries: bool = True) -> KinesisClient: ...

    @overload
    def client(self, service: Literal["s3"], *, retries: bool = True) -> S3Client: ...

    @overload
    def client(self, service: Literal["sns"], *, retries: bool = True) -> SNSClient: ...

    @overload
    def client(self, service: Literal["ssm"], *, retries: bool = True) -> SSMClient: ...

    @overload
    def client(self, service: Literal["sts"], *, retries: bool = True) -> STSClient: ...

    def client(self, service: str, *, retries: bool = True) -> Any:
        """The service's client, typed by the boto3 stubs for the services we use (one per service, cached).

        ``retries=False`` gives one without botocore's automatic retries, for calls that are not safe to
        repeat blindly (StartTask, reboots): recovery checks whether they took effect before it asks again."""
        name = service if retries else f"{service}/once"
        if name not in self._cache:
            self._cache[name] = self._make(service, retries)
        return self._cache[name]

    def _make(self, service: str, retries: bool = True) -> object:
        from botocore.config import Config

        attempts = 5 if retries else 1
        kwargs: dict[str, Any] = {
            "region_name": self.settings.region,
            "config": Config(retries={"total_max_attempts": attempts, "mode": "standard"}, max_pool_connections=32,
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
        make: Callable[..., object] = self.session.client  # typed per service by the overloads above
        return make(service, **kwargs)
