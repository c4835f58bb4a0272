"""Replay from files: a JSON Lines file, or every file under a folder; gzip or plain."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from replay.sources.base import Progress, RawRecord, SourceError
from replay.sources.framing import READ_BUFFER, CountingReader, records_of_stream


class FileSource:
    """A JSON Lines file, or every file under a folder (sorted by path); gzip or plain."""

    reads_window = False

    def __init__(self, path: str | Path) -> None:
        self._root = Path(path)
        if not self._root.exists():
            raise SourceError(f"file:{path} does not exist")
        self.description = f"file:{self._root}"
        self._files = _files_under(self._root)
        self._sizes = [f.stat().st_size for f in self._files]
        self._done_bytes = 0
        self._reader: CountingReader | None = None

    def records(self) -> Iterator[RawRecord]:
        self._done_bytes = 0
        for path, size in zip(self._files, self._sizes, strict=True):
            with path.open("rb", buffering=0) as raw:
                self._reader = CountingReader(raw)
                yield from records_of_stream(io.BufferedReader(self._reader, READ_BUFFER), str(path))
            self._reader = None
            self._done_bytes += size

    def progress(self) -> Progress:
        current = self._reader.count if self._reader else 0
        return Progress(self._done_bytes + current, float(sum(self._sizes)), "bytes")


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
