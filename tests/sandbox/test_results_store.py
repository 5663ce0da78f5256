"""Batch results live on disk, as Mailchimp keeps its archives on a file store: the
sandbox's memory does not grow with every export it has answered."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from flask_mcsync.sandbox.results import RESULTS_PER_FILE, CompactResults, ResultsGone

ENTRIES = [
    {"status_code": 200, "operation_id": str(n), "response": json.dumps({"id": f"m{n}"})}
    for n in range(RESULTS_PER_FILE * 2 + 200)
]


def _filled() -> CompactResults:
    results = CompactResults()
    for entry in ENTRIES:
        results.append(entry)
    results.close()
    return results


def _read(files: list[bytes]) -> list[dict[str, object]]:
    return [entry for data in files for entry in json.loads(data)]


def test_results_are_read_back_whole_from_a_file_of_their_own() -> None:
    results = _filled()
    files = list(results.json_files())
    assert len(files) == 3  # two full files and the partial last one
    assert _read(files) == ENTRIES
    path = Path(results._path or "")
    assert path.is_file() and path.stat().st_size == results.stored_bytes > 0


def test_cleared_results_leave_no_file_behind() -> None:
    results = _filled()
    path = Path(results._path or "")
    results.clear()
    assert not path.exists()
    assert results.stored_bytes == 0
    # Read after the clear: no archive at all, never an empty one (which would say that
    # Mailchimp answered none of the batch's operations).
    with pytest.raises(ResultsGone):
        results.json_files()
    results.clear()  # twice is harmless


def test_a_batch_dropped_takes_its_file_along() -> None:
    results = _filled()
    path = Path(results._path or "")
    del results
    gc.collect()
    assert not path.exists()


def test_a_download_under_way_when_the_results_expire_is_still_whole() -> None:
    results = _filled()
    download = results.json_files()
    first = next(download)
    results.clear()
    assert _read([first, *download]) == ENTRIES
