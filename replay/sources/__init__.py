"""Where history comes from: the stream (every shard in parallel), the Firehose archive in S3, or files.

Every source yields ``RawRecord(position, data, arrival)``: the bytes of one record exactly as stored,
where it was found (``shard:sequence``, ``s3://bucket/key:line``, ``path:line``) and, where the source keeps
it (the stream, recorded files), when Kinesis took it in. Decoding is the caller's: a line may be one of our
envelopes or a raw EventBridge event, mixed freely.

Sources stream: nothing holds more than one line (files, S3) or a few batches per shard (stream).
One module per idea: ``base`` (the protocol), ``framing`` (Firehose's lines and gzip), ``recorded``
(lines kept with their Kinesis metadata), ``files``, ``s3``, ``stream``; ``open_source`` turns a
``--source`` value into one of them.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, overload

from replay.sources.base import Progress, RawRecord, Source, SourceError
from replay.sources.files import FileSource
from replay.sources.framing import CountingReader, records_of_stream, split_objects
from replay.sources.s3 import S3Source
from replay.sources.stream import KinesisFactory, ProcessStreamSource, StreamReadError, StreamSource

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ClientFactory", "CountingReader", "FileSource", "ProcessStreamSource", "Progress", "RawRecord", "S3Source",
    "Source", "SourceError", "StreamReadError", "StreamSource", "open_source", "records_of_stream", "split_objects",
]


class ClientFactory(Protocol):
    """A boto3 client by service name (``AwsClients.client``)."""

    @overload
    def __call__(self, service: Literal["kinesis"], /) -> KinesisClient: ...

    @overload
    def __call__(self, service: Literal["s3"], /) -> S3Client: ...


def open_source(
    spec: str,
    *,
    clients: ClientFactory | None,
    stream_name: str,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    kinesis_factory: KinesisFactory | None = None,
) -> Source:
    """``stream``, ``s3://bucket/prefix`` or ``file:PATH`` -> a Source (clients only when AWS is needed).

    With ``kinesis_factory`` (picklable) the stream is read in a child process, else in threads here.
    """
    if spec == "stream" and kinesis_factory is not None:
        return ProcessStreamSource(kinesis_factory, stream_name, now=now, since=since, until=until)
    if spec == "stream":
        return StreamSource(_need(clients, spec)("kinesis"), stream_name, now=now, since=since, until=until)
    if spec.startswith("s3://"):
        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        if not bucket:
            raise SourceError(f"--source {spec}: expected s3://BUCKET/PREFIX")
        return S3Source(_need(clients, spec)("s3"), bucket, prefix)
    if spec.startswith("file:"):
        return FileSource(os.path.expanduser(spec.removeprefix("file:")))
    raise SourceError(f"--source {spec!r}: expected 'stream', 's3://BUCKET/PREFIX' or 'file:PATH'")


def _need(clients: ClientFactory | None, spec: str) -> ClientFactory:
    if clients is None:
        raise SourceError(f"--source {spec} needs AWS clients")
    return clients
