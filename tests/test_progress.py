"""The progress answer (progress window, ``export --wait``, the benchmark's poll) stays
right through a run while reading only the run row and a window of batches.

Its counts are kept on the run row by the batches as they end or retry; here they are
checked, again and again during a run with passing failures, against sums over the
batch rows themselves, read in the same database snapshot.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import (
    choose_audience,
    expected_export,
    insert_customers,
    shop_rows,
    wait_run_ended,
)
from sqlalchemy.orm import Session

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def snapshot(engine: sa.Engine) -> Iterator[Session]:
    """A session whose reads all see one state of the database, while workers write."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")  # pysqlite would otherwise read each SELECT apart
    else:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    session = Session(bind=conn)
    try:
        yield session
    finally:
        session.close()
        conn.rollback()
        conn.close()


def from_batch_rows(session: Session, run_id: int) -> dict[str, Any]:
    """What the progress answer must say, summed over every batch row."""
    from flask_mcsync.models import Batch

    rows = session.execute(
        sa.select(
            Batch.status,
            Batch.retries,
            Batch.retry_seconds,
            Batch.finished_operations,
            Batch.lease_until,
        ).where(Batch.run_id == run_id)
    ).all()
    active = [r for r in rows if r.status in ("sending", "processing")]
    return {
        "batch_count": len(rows),
        "batch_counts": {
            "done": sum(r.status == "done" for r in rows),
            "failed": sum(r.status == "failed" for r in rows),
            "active": len(active),
            "waiting": sum(r.status == "waiting" for r in rows),
        },
        "retries": sum(r.retries for r in rows),
        "most_retries": max((r.retries for r in rows), default=0),
        "retry_seconds": round(sum(r.retry_seconds for r in rows), 1),
        "in_flight_operations": sum(r.finished_operations for r in active),
        "leased_until": max(
            (r.lease_until.isoformat() for r in active if r.lease_until), default=None
        ),
    }


def check(engine: sa.Engine, run_id: int) -> dict[str, Any]:
    from flask_mcsync.runs import WINDOW, progress

    with snapshot(engine) as session:
        data = progress(session, run_id)
        assert data is not None
        truth = from_batch_rows(session, run_id)
    said = {key: data[key] for key in truth}
    assert said == truth
    # Only a window of batches travels: a few of each status, in order.
    seqs = [b["seq"] for b in data["batches"]]
    assert seqs == sorted(seqs) and len(seqs) <= 5 * WINDOW
    for status in ("waiting", "done", "failed"):
        shown = sum(b["status"] == status for b in data["batches"])
        assert shown == min(truth["batch_counts"][status], WINDOW), status
    return data


def test_progress_counts_equal_the_batch_rows_through_a_run(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from example_app.models import db
    from flask_mcsync import state
    from flask_mcsync.runs import WINDOW, start_export

    rows = shop_rows(400)
    insert_customers(db, rows)
    choose_audience(app)
    sends = len(expected_export(rows, rules=False).send)
    batch_size = 5
    assert sends // batch_size > 2 * WINDOW  # more batches than the window shows
    # Passing failures (retried, counted) and slow batches (seen in flight).
    sandbox.client.set_faults(seed=5, retry_after=0, error_rates={"503": 0.08})
    sandbox.client.set_faults(batch_ops_per_second=400)
    workers.start(2)
    run_id = int(start_export(state(app), "test", batch_size=batch_size).run.id)

    seen_active = seen_retries = False
    deadline = time.monotonic() + 90
    while True:
        data = check(db.engine, run_id)
        seen_active |= data["batch_counts"]["active"] > 0
        seen_retries |= data["retries"] > 0
        if data["ended"]:
            break
        assert time.monotonic() < deadline, f"the run did not end: {data['batch_counts']}"
        time.sleep(0.1)
    final = wait_run_ended(db.session, run_id, timeout=5)
    sandbox.client.clear_faults()

    assert final["status"] == "finished", final["message"]
    assert final["created"] == sends and final["errors"] == 0
    assert final["batch_counts"] == {
        "done": final["batch_count"],
        "failed": 0,
        "active": 0,
        "waiting": 0,
    }
    assert seen_active and seen_retries
    # The window keeps the last batches done; the run page still lists every one.
    from flask_mcsync.runs import batches

    assert [b["seq"] for b in final["batches"]][-1] == final["batch_count"]
    assert len(batches(db.session, run_id)) == final["batch_count"]
