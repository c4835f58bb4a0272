"""The embedded AWS (``local.embedded_aws.EmbeddedAws``, moto's server on 127.0.0.1) for benchmarks.

``process`` (the default) runs it in a child process, so the server's request handling does not share
the GIL with the code being measured, as a real AWS endpoint would not; ``thread`` runs it in this one.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextlib.contextmanager
def embedded_aws(mode: str = "process") -> Iterator[str]:
    """Yields the endpoint URL of a fresh embedded AWS."""
    from local.embedded_aws import EmbeddedAws, free_port

    if mode == "thread":
        with EmbeddedAws() as aws:
            yield aws.endpoint_url
        return
    port = free_port()
    code = (
        "import time\nfrom local.embedded_aws import EmbeddedAws\n"
        f"EmbeddedAws({port}).start()\nwhile True:\n    time.sleep(3600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(endpoint, child)
        yield endpoint
    finally:
        child.terminate()
        child.wait(timeout=10)


def _wait_for(endpoint: str, child: subprocess.Popen[Any], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the embedded AWS exited with {child.returncode} before it served")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the embedded AWS at {endpoint} did not come up in {seconds:.0f} s")


@overload
def client(service: Literal["dynamodb"], endpoint_url: str) -> DynamoDBClient: ...


@overload
def client(service: Literal["kinesis"], endpoint_url: str) -> KinesisClient: ...


def client(service: str, endpoint_url: str) -> object:
    import boto3
    from botocore.config import Config

    make: Callable[..., object] = boto3.session.Session().client  # typed per service by the overloads above
    return make(
        service, endpoint_url=endpoint_url, region_name=REGION,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32), **CREDENTIALS,
    )
