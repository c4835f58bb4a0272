"""Replay from the Firehose archive in S3: every object under a prefix, in key order."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

from replay.sources.base import Progress, RawRecord
from replay.sources.framing import READ_BUFFER, CountingReader, records_of_stream

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Source:
    """Every object under ``s3://bucket/prefix``, in key order (Firehose's date partitions sort by time)."""

    reads_window = False

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self.description = f"s3://{bucket}/{prefix}"
        self._objects: list[tuple[str, int]] | None = None
        self._done_bytes = 0
        self._reader: CountingReader | None = None

    def objects(self) -> list[tuple[str, int]]:
        if self._objects is None:
            found: list[tuple[str, int]] = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
                found.extend(
                    (str(o["Key"]), int(o["Size"])) for o in page.get("Contents", []) if not o["Key"].endswith("/")
                )
            self._objects = sorted(found)
        return self._objects

    def records(self) -> Iterator[RawRecord]:
        self._done_bytes = 0
        for key, size in self.objects():
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
            self._reader = CountingReader(body)
            try:
                yield from records_of_stream(
                    io.BufferedReader(self._reader, READ_BUFFER), f"s3://{self._bucket}/{key}"
                )
            finally:
                self._reader.close()
                self._reader = None
            self._done_bytes += size

    def progress(self) -> Progress:
        total = float(sum(size for _, size in self._objects)) if self._objects is not None else None
        current = self._reader.count if self._reader else 0
        return Progress(self._done_bytes + current, total, "bytes")
