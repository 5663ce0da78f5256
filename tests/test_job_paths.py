"""Jobs already waiting in Redis when a shop upgrades name their function by dotted path
and carry positional arguments: every path an earlier version queued must still resolve
to a function taking the same arguments."""

from __future__ import annotations

import inspect

from rq.utils import import_attribute

from flask_mcsync import enqueue

# What earlier versions queued, and the arguments they passed: the seven paths of 40ddb8d
# (before issue 12 reshaped the modules) and plan_chunk (issue 10's chunked planning).
QUEUED_BY_EARLIER_VERSIONS = {
    "flask_mcsync.jobs.plan_run": ["run_id", "token"],
    "flask_mcsync.jobs.plan_chunk": ["chunk_id", "token"],
    "flask_mcsync.jobs.advance_batch": ["batch_id", "token"],
    "flask_mcsync.jobs.drain_outbox": [],
    "flask_mcsync.jobs.sync_outbox_item": ["item_id"],
    "flask_mcsync.jobs.resync_address": ["run_id", "email"],
    "flask_mcsync.jobs.apply_webhook_event": ["event_id"],
    "flask_mcsync.jobs.reconcile_audience": [],
}


def test_every_job_path_an_earlier_version_queued_still_runs_with_its_arguments() -> None:
    for path, parameters in QUEUED_BY_EARLIER_VERSIONS.items():
        func = import_attribute(path)  # what an RQ worker does with a stored job
        assert callable(func), path
        signature = inspect.signature(func)
        # The same parameters, in the same order: a queued job passes its arguments by
        # position. (A new optional parameter at the end would be safe too, but is a
        # change to make on purpose, with this list.)
        assert list(signature.parameters) == parameters, path


def test_every_path_queued_today_is_pinned_above() -> None:
    queued = {
        value
        for name, value in vars(enqueue).items()
        if name.isupper() and isinstance(value, str) and value.startswith(f"{enqueue.JOBS}.")
    }
    assert queued == set(QUEUED_BY_EARLIER_VERSIONS)
