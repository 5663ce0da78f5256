"""Compact storage of a batch: its queued operations and its per-operation results.

Queued operations are kept as one zlib-compressed JSON document per batch (a client may
queue 500 batches of 10k operations: as dicts they would take gigabytes) and unpacked
only while the batch runs.

A 1M-address export yields 1M results of about 1.5 kB of member JSON each: kept as
Python dicts (or as a ready tar.gz next to them) they would take gigabytes. Results are
grouped into the archive's own files of ``RESULTS_PER_FILE`` entries and each file is
kept zlib-compressed; the tar.gz is built only when someone downloads it.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

RESULTS_PER_FILE = 500


def pack_operations(operations: list[dict[str, Any]]) -> bytes:
    return zlib.compress(json.dumps(operations).encode("utf-8"), 1)


def unpack_operations(packed: bytes) -> list[dict[str, Any]]:
    if not packed:
        return []
    operations: list[dict[str, Any]] = json.loads(zlib.decompress(packed))
    return operations


class CompactResults:
    """Append-only results of one batch, compressed a file at a time."""

    def __init__(self) -> None:
        self._files: list[bytes] = []
        self._open: list[dict[str, Any]] = []

    def append(self, entry: dict[str, Any]) -> None:
        self._open.append(entry)
        if len(self._open) >= RESULTS_PER_FILE:
            self._seal()

    def _seal(self) -> None:
        data = json.dumps(self._open).encode("utf-8")
        self._files.append(zlib.compress(data, 1))
        self._open = []

    def close(self) -> None:
        """No more results: the last partial file is sealed too."""
        if self._open:
            self._seal()

    def clear(self) -> None:
        """Drop everything (the results expired or the batch was deleted)."""
        self._files, self._open = [], []

    def json_files(self) -> Iterator[bytes]:
        for compressed in self._files:
            yield zlib.decompress(compressed)

    @property
    def stored_bytes(self) -> int:
        return sum(len(f) for f in self._files)


def tar_gz(batch_id: str, json_files: Iterable[bytes]) -> bytes:
    """A tar.gz like Mailchimp's: a './' directory and './<name>.json' result files."""
    buffer = io.BytesIO()
    stamp = time.time()
    # compresslevel 1: archives of 100k results must be quick to build; size is secondary.
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        directory = tarfile.TarInfo(".")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        directory.mtime = stamp
        tar.addfile(directory)
        for number, data in enumerate(json_files):
            info = tarfile.TarInfo(f"./{batch_id}-{number}.json")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = stamp
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_archive(batch_id: str, results: list[dict[str, Any]]) -> bytes:
    """The archive of a plain list of result entries (for tests and tools)."""
    files = (
        json.dumps(results[start : start + RESULTS_PER_FILE]).encode("utf-8")
        for start in range(0, len(results), RESULTS_PER_FILE)
    )
    return tar_gz(batch_id, files)
