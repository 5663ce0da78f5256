"""Manual export against a misbehaving Mailchimp: 429 with Retry-After, 5xx, timeouts,
dropped connections and expired batch results. Whatever happens, the run ends and every
address is accounted for (created + updated + errors == total, one outcome each).

Faults are scripted with the sandbox's one-shot rules (a queue: only its head is
considered), so each test meets the same faults every time.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from helpers_export import (
    assert_all_recorded,
    prepare_export,
    read_progress,
    shop_db,
    shop_rows,
    start_export_run,
    wait_run_ended,
)
from support import SLOW_ANSWER, wait_for

pytestmark = pytest.mark.slow

SUBMIT = {"method": "POST", "path_contains": "/batches"}
POLL = {"method": "GET", "path_contains": "/batches/"}


_db = shop_db


def _prepare(app: Flask, count: int = 90, seed: int = 21) -> Any:
    return prepare_export(app, shop_rows(count, seed=seed))


def _start(app: Flask, batch_size: int = 30) -> int:
    return start_export_run(app, batch_size)


def _assert_accounted(sandbox: Any, run_id: int, expected: Any, data: dict[str, Any]) -> None:
    assert data["total"] == len(expected.send)
    assert data["created"] + data["updated"] + data["errors"] == data["total"]
    assert_all_recorded(sandbox, run_id, expected, data)


def test_429_with_retry_after_is_honoured(app: Flask, sandbox: Any, workers: Any) -> None:
    expected = _prepare(app)
    sandbox.client.set_faults(retry_after=4, next=[{"status": 429, **SUBMIT}])
    workers.start(1)
    run_id = _start(app)
    data = wait_run_ended(_db().session, run_id, timeout=40)

    _assert_accounted(sandbox, run_id, expected, data)
    assert sandbox.client.stats()["responses_by_status"].get("429") == 1
    hit = [b for b in data["batches"] if b["retries"]]
    assert len(hit) == 1 and hit[0]["retries"] == 1
    # The refused batch waited at least Retry-After before it was sent again.
    from flask_mcsync.models import Batch

    session = _db().session
    session.commit()
    batch = session.get(Batch, _batch_id(run_id, hit[0]["seq"]))
    assert batch.submitted_at is not None and batch.started_at is not None
    assert (batch.submitted_at - batch.started_at).total_seconds() >= 4


def _batch_id(run_id: int, seq: int) -> int:
    import sqlalchemy as sa

    from flask_mcsync.models import Batch

    return int(
        _db()
        .session.execute(sa.select(Batch.id).where(Batch.run_id == run_id, Batch.seq == seq))
        .scalar_one()
    )


def test_server_errors_one_shot_are_retried(app: Flask, sandbox: Any, workers: Any) -> None:
    expected = _prepare(app)
    # One batch, so its requests come in one order whatever the timing: its sends until
    # one is taken in, then its polls.
    sandbox.client.set_faults(
        retry_after=0,
        next=[
            {"status": 500, **SUBMIT},
            {"status": 502, **SUBMIT},
            {"status": 503, **POLL},
            {"status": 504, **POLL, "count": 2},
        ],
    )
    workers.start(2)
    run_id = _start(app, batch_size=len(expected.send))
    data = wait_run_ended(_db().session, run_id, timeout=50)

    _assert_accounted(sandbox, run_id, expected, data)
    assert sandbox.client.faults()["next"] == []  # every scripted fault was met
    statuses = sandbox.client.stats()["responses_by_status"]
    assert {code: statuses.get(code) for code in ("500", "502", "503", "504")} == {
        "500": 1,
        "502": 1,
        "503": 1,
        "504": 2,
    }
    (batch,) = data["batches"]
    assert batch["retries"] == 5  # two sends and three polls tried again


def test_random_server_errors_do_not_lose_addresses(app: Flask, sandbox: Any, workers: Any) -> None:
    expected = _prepare(app, count=120, seed=23)
    sandbox.client.set_faults(seed=4, retry_after=0, error_rates={"500": 0.15, "503": 0.1})
    workers.start(2)
    run_id = _start(app, batch_size=40)
    data = wait_run_ended(_db().session, run_id, timeout=55)

    sandbox.client.clear_faults()  # the checks below read the audience
    _assert_accounted(sandbox, run_id, expected, data)


def test_timeouts_are_retried_without_doubles(app: Flask, sandbox: Any, workers: Any) -> None:
    expected = _prepare(app)
    # Longer than MCSYNC_REQUEST_TIMEOUT: the client gives up, the server goes on.
    sandbox.client.set_faults(
        timeout_seconds=SLOW_ANSWER,
        next=[{"status": "timeout", **SUBMIT}, {"status": "timeout", **POLL}],
    )
    workers.start(2)
    run_id = _start(app)
    data = wait_run_ended(_db().session, run_id, timeout=50)

    _assert_accounted(sandbox, run_id, expected, data)
    assert sandbox.client.faults()["next"] == []
    # The submit and the poll that timed out each cost an attempt, nothing more.
    assert sum(b["retries"] for b in data["batches"]) == 2


def test_dropped_connections_are_retried(app: Flask, sandbox: Any, workers: Any) -> None:
    expected = _prepare(app)
    # One batch, so its requests come in one order whatever the timing (see above).
    sandbox.client.set_faults(
        next=[
            {"status": "drop", **SUBMIT},
            {"status": "drop", **SUBMIT},
            {"status": "drop", **POLL},
        ],
    )
    workers.start(2)
    run_id = _start(app, batch_size=len(expected.send))
    data = wait_run_ended(_db().session, run_id, timeout=50)

    _assert_accounted(sandbox, run_id, expected, data)
    assert sandbox.client.faults()["next"] == []
    assert sandbox.client.stats()["responses_by_status"].get("dropped") == 3
    (batch,) = data["batches"]
    assert batch["retries"] == 3


def test_expired_batch_results_are_sent_again(app: Flask, sandbox: Any, workers: Any) -> None:
    expected = _prepare(app)
    sandbox.client.set_faults(expire_results=True)
    # Retries after the default 2 s, doubling: the batches' budget of re-sends (8) lasts
    # minutes, well past the wait below for each of them to meet expired results.
    workers.env["MCSYNC_RETRY_DELAY"] = "2.0"
    workers.start(2)
    run_id = _start(app)
    session = _db().session

    def every_batch_met_expiry() -> bool:
        batches = read_progress(session, run_id)["batches"]
        return (
            bool(batches)
            and all("expired" in (b["last_error"] or "") for b in batches if b["status"] != "done")
            and len(batches) == -(-len(expected.send) // 30)
        )

    wait_for(every_batch_met_expiry, timeout=30, what="every batch to meet expired results")
    running = read_progress(session, run_id)
    assert not running["ended"]
    assert running["done"] == 0  # nothing was counted from results nobody could read
    sandbox.client.set_faults(expire_results=False)
    data = wait_run_ended(session, run_id, timeout=40)

    _assert_accounted(sandbox, run_id, expected, data)
    # Each batch was re-sent: Mailchimp saw more batches than we have.
    assert len(sandbox.client.stats()["batches"]) > len(data["batches"])
