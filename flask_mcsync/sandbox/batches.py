"""Background processing of batch operations and their result archives.

One worker thread takes unfinished batches in submission order (FIFO, like Mailchimp's
per-account queue) and runs each operation through the same code as the direct API,
paced at ``batch_ops_per_second`` so tests can watch a batch progress or stall.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from typing import Any

from .faults import Faults
from .operations import run_operation
from .state import Batch, SandboxState, now_iso

RESULTS_PER_FILE = 500
# Longest single sleep, so rate changes, deletes, resets and stop() are noticed quickly.
_TICK = 0.05


def build_archive(batch_id: str, results: list[dict[str, Any]]) -> bytes:
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
        for number, start in enumerate(range(0, len(results), RESULTS_PER_FILE)):
            data = json.dumps(results[start : start + RESULTS_PER_FILE]).encode("utf-8")
            info = tarfile.TarInfo(f"./{batch_id}-{number}.json")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = stamp
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class BatchWorker:
    """Runs queued batches in a daemon thread until stop()."""

    def __init__(self, state: SandboxState, faults: Faults) -> None:
        self.state = state
        self.faults = faults
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-batches", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.state.batch_queued.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            # Clear before looking, so a batch queued right after the look still wakes us.
            self.state.batch_queued.clear()
            batch = self.state.next_unfinished_batch()
            if batch is None:
                self.state.batch_queued.wait(0.5)
                continue
            self._process(batch)

    def _alive(self, batch: Batch) -> bool:
        """False once the batch was deleted (DELETE /batches/{id} or a reset)."""
        with self.state.lock:
            return not self._stop.is_set() and self.state.batches.get(batch.id) is batch

    def _set_status(self, batch: Batch, status: str) -> bool:
        with self.state.lock:
            if not self._alive(batch):
                return False
            batch.status = status
            return True

    def _process(self, batch: Batch) -> None:
        if not (self._set_status(batch, "preprocessing") and self._set_status(batch, "started")):
            return
        rate = -1.0
        rate_start, rate_index = 0.0, 0
        index = len(batch.results)
        while index < len(batch.operations):
            current = self.faults.batch_ops_per_second
            if current != rate:
                # Restart the pacing clock whenever the configured rate changes.
                rate, rate_start, rate_index = current, time.monotonic(), index
            if rate > 0:
                # Operation k of this rate period is due k/rate seconds after its start
                # (the first one too), so a tiny rate really holds the queue back.
                delay = rate_start + (index - rate_index + 1) / rate - time.monotonic()
                if delay > 0.001:
                    time.sleep(min(delay, _TICK))
                    if not self._alive(batch):
                        return
                    continue
            entry = run_operation(self.state, batch.operations[index], batch.base_url)
            with self.state.lock:
                if not self._alive(batch):
                    return
                batch.results.append(entry)
                batch.finished_operations += 1
                if entry["status_code"] >= 400:
                    batch.errored_operations += 1
                self.state.stats.operations_processed += 1
            index += 1
        if not self._set_status(batch, "finalizing"):
            return
        archive = build_archive(batch.id, batch.results)
        with self.state.lock:
            if self._alive(batch):
                batch.archive = archive
                batch.completed_at = now_iso()
                batch.status = "finished"
                self.state.stats.batches_processed += 1
