"""Shared fixtures: moto-backed clients, and the embedded moto server for tests that need HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.embedded_aws import EmbeddedAws


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never reach a real account, whatever the developer's shell holds.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def kinesis(aws: None) -> Any:
    return boto3.client("kinesis", region_name="us-east-1")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    with EmbeddedAws() as server:
        yield server.endpoint_url


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("GPU_RECOVERY_TEST", "1")
