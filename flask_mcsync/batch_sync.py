"""Sending one batch of a manual export: submit it as a Mailchimp batch operation, poll
it to completion, read every operation's result, record every address's outcome.

One job, :func:`advance`, does whatever the batch needs next. Polling is a scheduled
follow-up job, not a sleeping worker: a worker is busy only while it talks to Mailchimp.

Failures, by kind:

* transient (429, 5xx, timeout, results expired or missing) on the whole batch: re-sent
  after a backoff that honours Retry-After, up to ``MCSYNC_MAX_ATTEMPTS`` times;
* transient on some operations: those addresses go into a retry batch of the same run;
* permanent on an operation: recorded for that address, the rest go on;
* account-wide (bad key, audience gone): the run stops with Mailchimp's message.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from . import jobs, leases
from .addresses import subscriber_hash
from .extension import McSync
from .gateway import (
    AccountError,
    Gateway,
    MailchimpError,
    TransientError,
    error_from_response,
    member_body,
    was_created,
)
from .models import Batch, Run, utcnow
from .outcomes import AddressOutcome, Result, archived_outcome, previously_synced, record
from .retry import backoff_seconds
from .runs import RUN_ENDED, end_run, finish_if_complete
from .throttle import SlotTimeout

# Mailchimp may stamp a new member a little before our clock says we sent it. Kept small:
# a member that existed more than this before the first send must count as updated.
CLOCK_SKEW = timedelta(seconds=2)


def advance(ext: McSync, batch_id: int, token: str | None = None) -> None:
    session = ext.session
    token = leases.claim(session, Batch, batch_id, ext.config.lease_seconds, token)
    if token is None:
        return  # held by another worker, or already done
    batch = session.get(Batch, batch_id)
    run = session.get(Run, batch.run_id) if batch else None
    if batch is None or run is None or run.status in RUN_ENDED:
        return
    gateway = ext.gateway()
    try:
        if batch.mailchimp_batch_id is None:
            _submit(ext, gateway, run, batch, token)
        else:
            _poll(ext, gateway, run, batch, token)
    except AccountError as exc:
        session.rollback()
        end_run(
            session,
            run.id,
            "failed",
            f"Mailchimp refused the account or audience: {exc.title}. {exc.detail} Check"
            " MCSYNC_API_KEY and the audience in General settings, then export again.",
        )
        session.commit()
    except (TransientError, SlotTimeout) as exc:
        session.rollback()
        _retry_later(ext, batch_id, token, exc)


def _operations(run: Run, batch: Batch) -> list[dict[str, Any]]:
    # The owner's choice in the export window: without it, Mailchimp refuses every
    # member missing a required merge field, new or existing.
    params = {"params": {"skip_merge_validation": "true"}} if run.skip_merge_validation else {}
    return [
        {
            "method": "PUT",
            "path": f"/lists/{run.list_id}/members/{subscriber_hash(email)}",
            "operation_id": str(index),
            "body": json.dumps(member_body(email, run.status_if_new, merge_fields)),
            **params,
        }
        for index, (email, merge_fields) in enumerate(batch.payload)
    ]


def _submit(ext: McSync, gateway: Gateway, run: Run, batch: Batch, token: str) -> None:
    session = ext.session
    session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch.id, token))
        .values(status="sending", started_at=Batch.started_at if batch.started_at else utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    submitted_at = utcnow()
    answer = gateway.submit_batch(_operations(run, batch))
    _schedule_poll(
        ext,
        batch.id,
        token,
        mailchimp_batch_id=answer["id"],
        status="processing",
        submitted_at=submitted_at,
        finished_operations=0,
        total_operations=len(batch.payload),
    )


def _schedule_poll(ext: McSync, batch_id: int, token: str, **values: Any) -> None:
    delay = ext.config.poll_interval
    session = ext.session
    session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch_id, token))
        .values(
            lease_until=utcnow() + timedelta(seconds=delay + ext.config.lease_seconds),
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    jobs.schedule_batch(ext, batch_id, token, delay)


def _poll(ext: McSync, gateway: Gateway, run: Run, batch: Batch, token: str) -> None:
    assert batch.mailchimp_batch_id is not None
    status = gateway.get_batch(batch.mailchimp_batch_id)
    if status.get("status") != "finished":
        _schedule_poll(
            ext,
            batch.id,
            token,
            status="processing",
            poll_failures=0,
            finished_operations=int(status.get("finished_operations") or 0),
        )
        return
    results = gateway.batch_results(str(status.get("response_body_url") or ""))
    by_op = {str(r["operation_id"]): r for r in results if r.get("operation_id") is not None}
    # From the FIRST send: a re-send (after expired results) finds the members it created
    # the first time, and they are still "created".
    since = (batch.started_at or batch.submitted_at or utcnow()) - CLOCK_SKEW
    outcomes: list[AddressOutcome] = []
    retry: list[list[Any]] = []
    known = previously_synced(ext.session, run.list_id, [email for email, _ in batch.payload])
    for index, (email, merge_fields) in enumerate(batch.payload):
        sent = {"merge_fields": merge_fields, "status_if_new": run.status_if_new}
        result = by_op.get(str(index))
        if result is None:
            # Lost from the archive: Mailchimp did not say what happened. Send it again.
            retry.append([email, merge_fields])
            continue
        code, body = result["status_code"], result["response"]
        if code < 400 and body.get("status") == "archived":
            # status_if_new leaves an archived contact archived: say so, never "created".
            outcomes.append(archived_outcome(email, sent))
            continue
        if code < 400:
            created = subscriber_hash(email) not in known and was_created(
                body, run.status_if_new, since
            )
            outcomes.append(
                AddressOutcome(
                    email,
                    Result.CREATED if created else Result.UPDATED,
                    mailchimp_status=body.get("status"),
                    sent=sent,
                )
            )
            continue
        error = error_from_response(code, body)
        if isinstance(error, TransientError) and batch.attempts < ext.config.max_attempts:
            retry.append([email, merge_fields])
        else:
            outcomes.append(AddressOutcome(email, Result.ERROR, error=error, sent=sent))
    _complete(ext, run, batch, token, outcomes, retry)


def _complete(
    ext: McSync,
    run: Run,
    batch: Batch,
    token: str,
    outcomes: list[AddressOutcome],
    retry: list[list[Any]],
) -> None:
    """Record the outcomes and mark the batch done, in one transaction."""
    session = ext.session
    counts = record(session, run.id, outcomes, batch.id)
    if retry:
        seq = session.execute(
            sa.select(sa.func.max(Batch.seq)).where(Batch.run_id == run.id)
        ).scalar_one()
        retry_batch = Batch(
            run_id=run.id,
            seq=seq + 1,
            retry_of=batch.retry_of or batch.seq,
            size=len(retry),
            first_address=retry[0][0][:254],
            last_address=retry[-1][0][:254],
            payload=retry,
            total_operations=len(retry),
            attempts=batch.attempts,
        )
        # Held for the backoff by the token its scheduled job carries, so the sweep does
        # not send it early.
        retry_delay = backoff_seconds(batch.attempts, None)
        retry_batch.lease_token = retry_token = leases.new_token()
        retry_batch.lease_until = utcnow() + timedelta(
            seconds=retry_delay + ext.config.lease_seconds
        )
        session.add(retry_batch)
        session.execute(
            sa.update(Run).where(Run.id == run.id).values(batch_count=Run.batch_count + 1)
        )
    done = session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch.id, token))
        .values(
            status="done",
            finished_operations=len(batch.payload),
            created=counts.get("created", 0),
            updated=counts.get("updated", 0),
            errors=counts.get("errors", 0),
            archived=counts.get("archived", 0),
            finished_at=utcnow(),
            lease_until=None,
            lease_token=None,
            last_error=(
                f"{len(retry)} address(es) failed for a passing reason and were put into a"
                " retry batch."
                if retry
                else None
            ),
        )
        .execution_options(synchronize_session=False)
    )
    if not getattr(done, "rowcount", 0):
        session.rollback()
        return  # another worker took the batch over; it records the outcomes
    session.commit()
    if retry:
        jobs.schedule_batch(ext, retry_batch.id, retry_token, retry_delay)
    finish_if_complete(ext, run.id)


def _retry_later(ext: McSync, batch_id: int, token: str, exc: Exception) -> None:
    """Try the batch's step again after a backoff, or give up after too many tries.

    Sending (and re-sending after results expired) is bounded by ``attempts``; a batch
    already at Mailchimp whose polls fail counts ``poll_failures`` instead, reset by
    every poll that gets an answer, so a long batch is not failed by occasional 5xx.
    """
    session = ext.session
    batch = session.get(Batch, batch_id)
    if batch is None:
        return
    session.refresh(batch)
    expired = isinstance(exc, MailchimpError) and exc.title == "Batch results expired"
    polling = batch.mailchimp_batch_id is not None and not expired
    tries = (batch.poll_failures if polling else batch.attempts) + 1
    message = f"{'Poll' if polling else 'Attempt'} {tries}: {exc}"
    counter = {"poll_failures": tries} if polling else {"attempts": tries}
    if tries >= ext.config.max_attempts:
        _give_up(ext, batch, token, exc, tries, message, counter)
        return
    retry_after = exc.retry_after if isinstance(exc, MailchimpError) else None
    delay = backoff_seconds(tries, retry_after)
    values: dict[str, Any] = {
        **counter,
        "retries": Batch.retries + 1,
        "last_error": message,
        "lease_until": utcnow() + timedelta(seconds=delay + ext.config.lease_seconds),
    }
    if not polling:
        # Not accepted by Mailchimp (or its results are gone): send it again from scratch.
        values.update(status="waiting", mailchimp_batch_id=None, poll_failures=0)
    session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch_id, token))
        .values(values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    jobs.schedule_batch(ext, batch_id, token, delay)


def _give_up(
    ext: McSync,
    batch: Batch,
    token: str,
    exc: Exception,
    tries: int,
    message: str,
    counter: dict[str, int],
) -> None:
    """Record every address of the batch as an error that was retried in vain."""
    session = ext.session
    error = exc if isinstance(exc, MailchimpError) else TransientError(type(exc).__name__, str(exc))
    gave_up = TransientError(f"Gave up after {tries} tries", f"{error.title}: {error.detail}")
    failed = session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch.id, token))
        .values(
            status="failed",
            retries=Batch.retries + 1,
            errors=len(batch.payload),
            last_error=message,
            finished_at=utcnow(),
            lease_until=None,
            lease_token=None,
            **counter,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(failed, "rowcount", 0) != 1:
        session.rollback()
        return  # another worker holds the batch now
    outcomes = [AddressOutcome(email, Result.ERROR, error=gave_up) for email, _ in batch.payload]
    record(session, batch.run_id, outcomes, batch.id)
    session.commit()
    finish_if_complete(ext, batch.run_id)
