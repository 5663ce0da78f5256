"""Compact storage of a batch: its queued operations and its per-operation results.

Queued operations are kept as one zlib-compressed JSON document per batch (a client may
queue 500 batches of 10k operations: as dicts they would take gigabytes) and unpacked
only while the batch runs.

A 1M-address export yields 1M results of about 1.5 kB of member JSON each: kept as
Python dicts (or as a ready tar.gz next to them) they would take gigabytes. Results are
grouped into the archive's own files of ``RESULTS_PER_FILE`` entries and each file is
zlib-compressed; the tar.gz is built only when someone downloads it.

The compressed files are written to disk, one file per batch in a folder of the
process's own, as Mailchimp keeps result archives on a file store (S3) rather than in
its API servers: compressed, a million results still took ~95 MB, so a sandbox kept in
memory grew by that much with every export of a 1M audience (1,070 MB at its third).
A batch's file goes when the batch does (deleted, the sandbox reset), when its results
expire, and the folder when the process ends.

How long Mailchimp keeps a batch's results is uncertain: ../shared/MAILCHIMP.md says only
that result files expire, and the presigned URL's own lifetime (``X-Amz-Expires``) says
nothing of the file behind it. The sandbox keeps them until one of the above, or until
the ``expire_results`` faults make them expire, which is how tests meet expiry.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
import time
import weakref
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

RESULTS_PER_FILE = 500


def pack_operations(operations: list[dict[str, Any]]) -> bytes:
    return zlib.compress(json.dumps(operations).encode("utf-8"), 1)


def unpack_operations(packed: bytes) -> list[dict[str, Any]]:
    if not packed:
        return []
    operations: list[dict[str, Any]] = json.loads(zlib.decompress(packed))
    return operations


_STORE: str | None = None
_STORE_LOCK = threading.Lock()


def _store() -> str:
    """This process's folder of result files, made at first use, removed at exit."""
    global _STORE
    with _STORE_LOCK:
        if _STORE is None:
            _STORE = tempfile.mkdtemp(prefix="mcsync-sandbox-results-")
            atexit.register(shutil.rmtree, _STORE, True)
        return _STORE


class ResultsGone(Exception):
    """A batch's results were removed (they expired) before they were read."""


def _read(file: IO[bytes], segments: list[tuple[int, int]]) -> Iterator[bytes]:
    with file:
        for offset, length in segments:
            file.seek(offset)
            yield zlib.decompress(file.read(length))


class CompactResults:
    """Append-only results of one batch, compressed a file at a time, kept on disk."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._segments: list[tuple[int, int]] = []  # (offset, length) in the file
        self._open: list[dict[str, Any]] = []
        self._forget: weakref.finalize | None = None
        self._cleared = False

    def append(self, entry: dict[str, Any]) -> None:
        self._open.append(entry)
        if len(self._open) >= RESULTS_PER_FILE:
            self._seal()

    def _seal(self) -> None:
        data = zlib.compress(json.dumps(self._open).encode("utf-8"), 1)
        if self._path is None:
            handle, self._path = tempfile.mkstemp(suffix=".results", dir=_store())
            os.close(handle)
            # The file goes with this object (a deleted batch, a reset sandbox).
            self._forget = weakref.finalize(self, Path(self._path).unlink, True)
        with open(self._path, "ab") as file:
            offset = file.seek(0, os.SEEK_END)
            file.write(data)
        self._segments.append((offset, len(data)))
        self._open = []

    def close(self) -> None:
        """No more results: the last partial file is sealed too."""
        if self._open:
            self._seal()

    def clear(self) -> None:
        """Drop everything (the results expired or the batch was deleted)."""
        self._cleared = True  # first: a download starting now must not find "no results"
        if self._forget is not None:
            self._forget()  # deletes the file, once
        self._path, self._forget, self._segments, self._open = None, None, [], []

    def json_files(self) -> Iterator[bytes]:
        """The archive's files, uncompressed, read from a file opened now: a clear()
        after this call (results expiring during a download) does not cut it short.

        :raises ResultsGone: the results were cleared before this call. An empty
            archive would tell a client that Mailchimp answered none of its operations.
        """
        path, segments = self._path, list(self._segments)
        if self._cleared:  # looked at after the path: a clear() under way is seen
            raise ResultsGone
        if path is None:
            return iter(())  # a batch that has no results (yet)
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by _read, after the last segment
        except FileNotFoundError:
            raise ResultsGone from None  # cleared by another thread just now
        return _read(file, segments)

    @property
    def stored_bytes(self) -> int:
        return sum(length for _, length in self._segments)


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
