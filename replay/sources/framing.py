"""Firehose's framing of stored objects: lines, gzip by its magic bytes, records written back to back;
and lines recorded with their Kinesis metadata (``recorded.py``), unwrapped.

Firehose without a delimiter processor writes records back to back (``}{`` or ``} {`` on one line); an
object may be gzip whatever its name. Nothing here holds more than one line.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from replay.sources.base import RawRecord, SourceError
from replay.sources.recorded import unwrap

GZIP_MAGIC = b"\x1f\x8b"
READ_BUFFER = 1 << 20
_BACK_TO_BACK = re.compile(rb"\}\s*\{")
_DECODER = json.JSONDecoder()


def split_objects(line: bytes) -> list[bytes]:
    """One stored line -> the records in it: usually one, several when Firehose concatenated them."""
    line = line.strip()
    if not line:
        return []
    if not _BACK_TO_BACK.search(line):
        return [line]
    text = line.decode("utf-8", "replace")
    parts: list[bytes] = []
    index = 0
    while index < len(text):
        try:
            _, end = _DECODER.raw_decode(text, index)
        except json.JSONDecodeError:
            parts.append(text[index:].encode())  # the rest is not JSON: the decoder will say so
            break
        parts.append(text[index:end].encode())
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return parts


def records_of_stream(stream: io.BufferedReader, where: str) -> Iterator[RawRecord]:
    """The records of one stored object, plain or gzip (by its magic bytes, not its name)."""
    lines: Iterable[bytes] = stream
    if stream.peek(2)[:2] == GZIP_MAGIC:
        lines = gzip.GzipFile(fileobj=stream, mode="rb")
    number = 0
    try:
        for number, line in enumerate(lines, start=1):
            parts = split_objects(line)
            if len(parts) == 1:
                yield unwrap(parts[0], f"{where}:{number}")
            else:
                for k, part in enumerate(parts, start=1):
                    yield unwrap(part, f"{where}:{number}#{k}")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a cut-off upload, or not gzip after all
        raise SourceError(f"{where} is not a whole gzip file: {exc} (after line {number}); re-fetch it or move it "
                          "out of the source") from None


class CountingReader(io.RawIOBase):
    """Counts the (compressed) bytes read from an inner file-like object, for progress and ETA."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.count += size
        return size

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()
        super().close()
