"""Background processing of batch operations and their result archives.

One worker thread takes unfinished batches in submission order (FIFO, like Mailchimp's
per-account queue) and runs each operation through the same code as the direct API,
paced at ``batch_ops_per_second`` so tests can watch a batch progress or stall.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .faults import Faults, signup_limit_error
from .operations import run_operation
from .results import build_archive, tar_gz, unpack_operations
from .state import Batch, SandboxState, now_iso

__all__ = ["BatchWorker", "archive_bytes", "build_archive"]


def archive_bytes(batch: Batch) -> bytes:
    """The results tar.gz of a finished batch, built now from its compact results."""
    return tar_gz(batch.id, batch.results.json_files())


# Longest single sleep, so rate changes, deletes, resets and stop() are noticed quickly.
_TICK = 0.05


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

    def _wait_start(self, batch: Batch) -> bool:
        """The batch start delay fault: stay "pending" until it is due (False if gone)."""
        while True:
            due = batch.submitted_monotonic + self.faults.batch_start_delay
            left = due - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, _TICK))
            if not self._alive(batch):
                return False

    def _run_one(self, op: dict[str, Any], base_url: str) -> dict[str, Any]:
        method, path = str(op.get("method", "")), str(op.get("path", ""))
        if self.faults.decide_operation(method, path):
            body = op.get("body")
            try:
                address = json.loads(body).get("email_address") if isinstance(body, str) else None
            except (ValueError, AttributeError):
                address = None
            error = signup_limit_error(str(address or path.rstrip("/").rsplit("/", 1)[-1]))
            return {
                "status_code": error.status,
                "operation_id": op.get("operation_id"),
                "response": json.dumps(error.body()),
            }
        return run_operation(self.state, op, base_url)

    def _process(self, batch: Batch) -> None:
        if not self._wait_start(batch):
            return
        if not (self._set_status(batch, "preprocessing") and self._set_status(batch, "started")):
            return
        rate = -1.0
        rate_start, rate_index = 0.0, 0
        index = batch.finished_operations
        operations = unpack_operations(batch.packed_operations)
        while index < len(operations):
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
            with self.state.lock:
                # Looked at and run under one hold of the lock: a reset or a delete landing
                # between the look and the operation would apply it to the account anew
                # (a test's sandbox, reset for the next test, got a member of the last one).
                if not self._alive(batch):
                    return
                entry = self._run_one(operations[index], batch.base_url)
                batch.results.append(entry)
                batch.finished_operations += 1
                if entry["status_code"] >= 400:
                    batch.errored_operations += 1
                self.state.stats.operations_processed += 1
            index += 1
            self.state.lock.give_way()  # a request waiting for the account goes first
        if not self._set_status(batch, "finalizing"):
            return
        with self.state.lock:
            if self._alive(batch):
                batch.packed_operations = b""
                batch.results.close()
                batch.completed_at = now_iso()
                batch.status = "finished"
                self.state.stats.batches_processed += 1
