"""Sending one batch of a manual export: submit it as a Mailchimp batch operation, poll
it to completion, read every operation's result, record every address's outcome.

One job, :func:`advance`, does whatever the batch needs next. Polling is a scheduled
follow-up job, not a sleeping worker: a worker is busy only while it talks to Mailchimp.

Failures, by kind:

* transient (429, 5xx, timeout) on a step (send, poll): that step is tried again after a
  backoff that honours Retry-After. The budget, ``MCSYNC_MAX_ATTEMPTS``, counts failed
  tries of the same step in a row, so a storm that fails each step now and then, which
  Mailchimp's own clients survive, never adds up to a give-up;
* the batch or its results lost at Mailchimp (``BatchLost``: results expired, or
  ``GET /batches/{id}`` answers 404): the batch is sent again, at most
  ``MCSYNC_MAX_ATTEMPTS`` times over its life;
* transient on some operations: those addresses go into a retry batch of the same run;
* permanent on an operation: recorded for that address, the rest go on;
* account-wide (bad key, audience gone): the run stops with Mailchimp's message, and
  none of its batches is left in progress.

A batch that does use up a budget asks Mailchimp, address by address, whether it holds
what we sent: an address Mailchimp holds is never recorded as failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from . import enqueue, jsoncodec, leases, messages
from .addresses import subscriber_hash
from .app_state import McSync
from .gateway import (
    MEMBER_FIELDS,
    AccountError,
    BatchLost,
    Gateway,
    MailchimpError,
    TransientError,
    error_from_response,
    gateway_for,
    gave_up,
    member_body,
)
from .models import Batch, Run
from .outcomes import AddressOutcome, Result, archived_outcome, created_or_updated, record
from .retry import backoff_seconds
from .runs import RUN_ENDED, count_ended, count_retry, finish_if_complete, stop_run
from .statuses import BatchStatus
from .throttle import SlotTimeout
from .times import utcnow

# Mailchimp may stamp a new member a little before our clock says we sent it. Kept small:
# a member that existed more than this before the first send must count as updated.
CLOCK_SKEW = timedelta(seconds=2)
# Looking up one address after a give-up: a few quick tries (the batch already waited).
LOOKUP_TRIES = 3
# A batch Mailchimp has not started waits behind the account's others (it runs one at a
# time, and one can sit "pending" for minutes): it is looked at again after this share
# of its wait so far, never sooner than MCSYNC_POLL_INTERVAL and, unless that interval is
# longer, never later than MAX_POLL_DELAY. Polls of a long wait then grow with its
# logarithm, not its length (see poll_delay). MAX_POLL_DELAY stays under the export
# window's 30 s without movement before it asks whether a worker runs (export.js,
# STALL_S): every poll renews its batch's lease, which the window counts as movement,
# and RQ runs a delay of 20 s within about 22 (whole seconds, plus its scheduler's tick).
POLL_SHARE_OF_WAIT = 1 / 8
MAX_POLL_DELAY = 20.0
# Mailchimp's word for a batch waiting behind others (MAILCHIMP.md: pending →
# preprocessing → started → finalizing → finished; it can sit "pending" for minutes).
NOT_STARTED = frozenset({"pending"})


def advance(ext: McSync, batch_id: int, token: str | None = None) -> int | None:
    """Take the batch's next step. Returns its run's id while the run is being planned
    (the step may have made room for a paused chunk, see :func:`~.runs.resumable`)."""
    session = ext.session
    unsent = Batch.mailchimp_batch_id.is_(None)
    # A batch not yet accepted by Mailchimp is marked as being sent in the claim's own
    # commit, before the POST (one commit, an fsync on SQLite, less per batch).
    token = leases.claim(
        session,
        Batch,
        batch_id,
        ext.config.lease_seconds,
        token,
        status=sa.case((unsent, BatchStatus.SENDING.value), else_=Batch.status),
        started_at=sa.case(
            (
                sa.and_(unsent, Batch.started_at.is_(None)),
                sa.literal(utcnow(), Batch.started_at.type),
            ),
            else_=Batch.started_at,
        ),
    )
    if token is None:
        return None  # held by another worker, or already done
    batch = session.get(Batch, batch_id)
    run = session.get(Run, batch.run_id) if batch else None
    if batch is None or run is None or run.status in RUN_ENDED:
        return None
    run_id, planning = run.id, not run.planning_done  # the step's commits expire the row
    held: str = token
    if batch.mailchimp_batch_id is None:
        _guarded(ext, batch_id, held, lambda gateway: _submit(ext, gateway, run, batch, held))
    else:
        _guarded(ext, batch_id, held, lambda gateway: _poll(ext, gateway, run, batch, held))
    return run_id if planning else None


class Sender:
    """Sends the batches a chunk's job commits, as it commits them.

    The planner has each batch's rows in hand: sending them at once spares a job, a
    claim and a reload of the payload per batch. All go through one gateway (one
    kept-alive connection, not one per batch), made at the first send.

    The ``POST`` runs in a thread of its own while the job plans the next batch, whose
    commit then records the answer: a batch's rows are read and checked while Mailchimp
    (or its network) takes the previous one in. One batch is in flight at a time, and
    only the ``POST`` leaves the job's thread: the database session is the job's alone.
    A job killed before a batch's answer is recorded leaves the batch leased, "sending"
    and without Mailchimp's id; when the lease runs out, the sweep has it sent again. The
    members are upserts, so nothing doubles, and "created" rests on the first send's
    time (:func:`_first_sent`).

    Sending from a thread was tried before with a session and an app context per send,
    and cost more worker CPU than the overlap saved (benchmarks/README.md, issue 10).
    """

    def __init__(self, ext: McSync) -> None:
        self.ext = ext
        self._gateway: Gateway | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._in_flight: tuple[int, str, datetime, int, Future[dict[str, Any]]] | None = None

    def send(self, batch_id: int, token: str, payload: list[list[Any]], run: Run) -> None:
        """Send a batch the planner has just committed, under the lease it committed with."""
        self.settle()
        if not _holds(self.ext, batch_id, token):
            return  # another worker took the batch over; it sends it
        operations = _operations(run, payload)
        if self._thread is None:  # the first send (a chunk may send nothing)
            self._gateway = gateway_for(self.ext)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcsync-send")
        assert self._gateway is not None
        future = self._thread.submit(self._gateway.submit_batch, operations)
        self._in_flight = (batch_id, token, utcnow(), len(operations), future)

    def settle(self) -> None:
        """Wait for Mailchimp's answer to the batch in flight, and record it."""
        if self._in_flight is None:
            return
        batch_id, token, submitted_at, count, future = self._in_flight
        # Interrupted while it waits (a job timeout), the batch stays in flight for
        # close() to record: its POST goes on in the thread whatever happens here.
        wait([future])
        self._in_flight = None
        _guarded(
            self.ext,
            batch_id,
            token,
            lambda _: _sent(self.ext, batch_id, token, submitted_at, count, future.result()),
            self._gateway,
        )

    def close(self) -> None:
        """Record the answer to the batch in flight, then end the thread and the gateway.

        Also after the job failed: what the job left uncommitted is rolled back first
        (a half-written batch must not be committed with the answer), and the answer is
        recorded in a transaction of its own, so a batch Mailchimp took in is not sent
        twice.
        """
        try:
            self.ext.session.rollback()
            self.settle()
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True)
            if self._gateway is not None:
                self._gateway.close()


def _guarded(
    ext: McSync,
    batch_id: int,
    token: str,
    step: Callable[[Gateway], None],
    gateway: Gateway | None = None,
) -> None:
    """Take one step of a batch; what Mailchimp refuses ends the run or is tried later."""
    session = ext.session
    try:
        step(gateway or gateway_for(ext))
    except AccountError as exc:
        session.rollback()
        batch = session.get(Batch, batch_id)
        if batch is None:
            return
        stop_run(
            session,
            batch.run_id,
            messages.ACCOUNT_REFUSED(title=exc.title, detail=exc.detail),
        )
        session.commit()
    except (TransientError, SlotTimeout) as exc:
        session.rollback()
        _retry_later(ext, batch_id, token, exc)


def _operations(run: Run, payload: list[Any]) -> list[dict[str, Any]]:
    # The owner's choice in the export window: without it, Mailchimp refuses every
    # member missing a required merge field, new or existing.
    params = {"params": {"skip_merge_validation": "true"}} if run.skip_merge_validation else {}
    list_id, status_if_new = run.list_id, run.status_if_new
    return [
        {
            "method": "PUT",
            "path": f"/lists/{list_id}/members/{subscriber_hash(email)}",
            "operation_id": str(index),
            "body": jsoncodec.dumps(member_body(email, status_if_new, merge_fields, language)),
            **params,
        }
        for index, (email, merge_fields, language) in enumerate(_entries(payload))
    ]


def _entries(payload: list[Any]) -> list[tuple[str, Any, str | None]]:
    """A batch's addresses as (email, merge fields, language); batches planned before
    the language was sent hold only the first two."""
    return [(e[0], e[1], e[2] if len(e) > 2 else None) for e in payload]


def _submit(ext: McSync, gateway: Gateway, run: Run, batch: Batch, token: str) -> None:
    if not _holds(ext, batch.id, token):
        return  # another worker took the batch over; it sends it
    operations = _operations(run, batch.payload)
    submitted_at = utcnow()
    _sent(ext, batch.id, token, submitted_at, len(operations), gateway.submit_batch(operations))


def _holds(ext: McSync, batch_id: int, token: str) -> bool:
    """Whether this job still holds the batch: only the lease holder sends.

    The claim committed the first send's time before anything went out; a worker that
    stalled past its lease and sent anyway would still double the batch at Mailchimp (and
    its members' "created" would then rest on that time alone). A read, not a write: no
    commit (an fsync on SQLite) per batch.
    """
    session = ext.session
    holder = sa.select(Batch.id).where(leases.holds(Batch, batch_id, token))
    if session.execute(holder).first() is None:
        session.rollback()
        return False
    return True


def _sent(
    ext: McSync,
    batch_id: int,
    token: str,
    submitted_at: datetime,
    count: int,
    answer: dict[str, Any],
) -> None:
    """Mailchimp took the batch in: record its id, and look at it after the poll interval."""
    _schedule_poll(
        ext,
        batch_id,
        token,
        mailchimp_batch_id=answer["id"],
        status=BatchStatus.PROCESSING,
        submitted_at=submitted_at,
        attempts=0,  # the send step succeeded: its budget starts over
        finished_operations=0,
        total_operations=count,
    )


def poll_delay(interval: float, mailchimp_status: str, waited: float) -> float:
    """Seconds until the next look at a batch Mailchimp has not finished, which has
    waited there ``waited`` seconds since it was sent.

    A batch a poll found running is looked at again after ``interval`` (its progress
    shows in the export window); one still waiting behind others, after an eighth of its
    wait so far, at least ``interval`` and at most :data:`MAX_POLL_DELAY` (or
    ``interval`` if longer). With a run's 20 batches out at Mailchimp, a fixed interval
    asked about every waiting batch every interval: with the default 2 s (3 s in RQ's
    whole-second scheduling) about seven requests a second, nearly all answered
    "pending".
    """
    if mailchimp_status not in NOT_STARTED:
        return interval
    return max(interval, min(waited * POLL_SHARE_OF_WAIT, MAX_POLL_DELAY))


def _schedule_poll(
    ext: McSync, batch_id: int, token: str, delay: float | None = None, **values: Any
) -> None:
    """Record ``values`` and look at the batch again after ``delay`` seconds
    (``MCSYNC_POLL_INTERVAL`` when not given), under the same lease."""
    if delay is None:
        delay = ext.config.poll_interval
    session = ext.session
    held = session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch_id, token))
        .values(
            lease_until=utcnow() + timedelta(seconds=delay + ext.config.lease_seconds),
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if getattr(held, "rowcount", 0):  # else another worker took the batch over
        enqueue.schedule_batch(ext, batch_id, token, delay)


def _poll(ext: McSync, gateway: Gateway, run: Run, batch: Batch, token: str) -> None:
    assert batch.mailchimp_batch_id is not None
    status = gateway.get_batch(batch.mailchimp_batch_id)
    if status.get("status") != "finished":
        sent_at = batch.submitted_at or batch.started_at
        waited = (utcnow() - sent_at).total_seconds() if sent_at else 0.0
        _schedule_poll(
            ext,
            batch.id,
            token,
            poll_delay(ext.config.poll_interval, str(status.get("status")), waited),
            status=BatchStatus.PROCESSING,
            poll_failures=0,
            finished_operations=int(status.get("finished_operations") or 0),
        )
        return
    results = gateway.batch_results(str(status.get("response_body_url") or ""), MEMBER_FIELDS)
    by_op = {str(r["operation_id"]): r for r in results if r.get("operation_id") is not None}
    since = _first_sent(batch)
    outcomes: list[AddressOutcome] = []
    retry: list[list[Any]] = []
    replies: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for index, (email, merge_fields, language) in enumerate(_entries(batch.payload)):
        sent = {"merge_fields": merge_fields, "status_if_new": run.status_if_new}
        if language:
            sent["language"] = language
        result = by_op.get(str(index))
        if result is None:
            # Lost from the archive: Mailchimp did not say what happened. Send it again.
            retry.append([email, merge_fields, language])
            continue
        code, body = result["status_code"], result["response"]
        if code < 400:
            replies.append((email, body, sent))
            continue
        error = error_from_response(code, body)
        if isinstance(error, TransientError) and batch.resends + 1 < ext.config.max_attempts:
            retry.append([email, merge_fields, language])
        else:
            outcomes.append(AddressOutcome(email, Result.ERROR, error=error, sent=sent))
    outcomes += _held(ext, run, since, replies)
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
    run_id = run.id  # read before the commit, which expires the row (no reload after)
    # The run's counters and its batches done, in one UPDATE (rolled back with the rest
    # if another worker took the batch over).
    counts = record(session, run_id, outcomes, batch.id, also={"batches_done": 1})
    if retry:
        # The run's row hands out the number, as it does to the planner's chunks (which
        # may still be planning): its UPDATE holds the row until the commit, so a retry
        # and a chunk never take the same number.
        seq = session.execute(
            sa.update(Run)
            .where(Run.id == run_id)
            .values(batch_count=Run.batch_count + 1)
            .returning(Run.batch_count)
            .execution_options(synchronize_session=False)
        ).scalar_one()
        retry_batch = Batch(
            run_id=run_id,
            seq=seq,
            retry_of=batch.retry_of or batch.seq,
            size=len(retry),
            first_address=retry[0][0][:254],
            last_address=retry[-1][0][:254],
            payload=retry,
            total_operations=len(retry),
            resends=batch.resends + 1,
            started_at=_first_sent(batch) + CLOCK_SKEW,
        )
        # Held for the backoff by the token its scheduled job carries, so the sweep does
        # not send it early.
        retry_delay = backoff_seconds(retry_batch.resends, None, ext.config.retry_delay)
        retry_batch.retry_seconds = retry_delay
        retry_batch.lease_token = retry_token = leases.new_token()
        retry_batch.lease_until = utcnow() + timedelta(
            seconds=retry_delay + ext.config.lease_seconds
        )
        session.add(retry_batch)
    done = session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch.id, token))
        .values(
            status=BatchStatus.DONE,
            finished_operations=len(batch.payload),
            created=counts.get("created", 0),
            updated=counts.get("updated", 0),
            errors=counts.get("errors", 0),
            archived=counts.get("archived", 0),
            finished_at=utcnow(),
            lease_until=None,
            lease_token=None,
            last_error=messages.RETRY_BATCH(count=len(retry)) if retry else None,
        )
        .execution_options(synchronize_session=False)
    )
    if not getattr(done, "rowcount", 0):
        session.rollback()
        return  # another worker took the batch over; it records the outcomes
    if retry:
        count_retry(session, run_id, retry_delay)
    session.commit()
    if retry:
        enqueue.schedule_batch(ext, retry_batch.id, retry_token, retry_delay)
    finish_if_complete(ext, run_id)


def _first_sent(batch: Batch) -> datetime:
    """When the batch's addresses were first sent, less the clock skew.

    From the FIRST send: a re-send (after Mailchimp lost the batch or its results)
    finds the members the first send created, and they are still "created".
    """
    return (batch.started_at or batch.submitted_at or utcnow()) - CLOCK_SKEW


def _held(
    ext: McSync,
    run: Run,
    since: datetime,
    replies: list[tuple[str, dict[str, Any], dict[str, Any]]],
) -> list[AddressOutcome]:
    """Outcomes of the addresses Mailchimp answered with the member it holds.

    Created or updated as :func:`~.outcomes.created_or_updated` says, for the whole
    batch at once (one probe by address, whose cost does not grow with the history).
    """
    # status_if_new leaves an archived contact archived: say so, never "created".
    archived = [archived_outcome(email, sent) for email, body, sent in replies if _archived(body)]
    replies = [reply for reply in replies if not _archived(reply[1])]
    # Each address hashed once, each answer read once.
    hashes = [subscriber_hash(email) for email, _, _ in replies]
    members = [(email, body) for email, body, _ in replies]
    results = created_or_updated(
        ext.session, run.list_id, run.status_if_new, since, members, hashes, run.id
    )
    return archived + [
        AddressOutcome(
            email,
            result,
            mailchimp_status=body.get("status"),
            sent=sent,
            email_hash=email_hash,
        )
        for (email, body, sent), email_hash, result in zip(replies, hashes, results, strict=True)
    ]


def _archived(member: dict[str, Any]) -> bool:
    return member.get("status") == "archived"


def _retry_later(ext: McSync, batch_id: int, token: str, exc: Exception) -> None:
    """Try the batch's step again after a backoff, or give up after too many tries.

    Each step has its own budget: ``attempts`` counts failed sends in a row (reset when
    Mailchimp accepts the batch), ``poll_failures`` failed polls in a row (reset by every
    poll that gets an answer), and ``resends`` the times Mailchimp lost the batch or its
    results (never reset, so a batch whose results always expire still ends).
    """
    session = ext.session
    batch = session.get(Batch, batch_id)
    if batch is None:
        return
    session.refresh(batch)
    if isinstance(exc, BatchLost):
        step, said, tries = "resends", messages.RESEND, batch.resends + 1
    elif batch.mailchimp_batch_id is not None:
        step, said, tries = "poll_failures", messages.POLL, batch.poll_failures + 1
    else:
        step, said, tries = "attempts", messages.ATTEMPT, batch.attempts + 1
    message = said(tries=tries, error=exc)
    if tries >= ext.config.max_attempts:
        _give_up(ext, batch, token, exc, tries, message, {step: tries})
        return
    retry_after = exc.retry_after if isinstance(exc, MailchimpError) else None
    delay = backoff_seconds(tries, retry_after, ext.config.retry_delay)
    values: dict[str, Any] = {
        step: tries,
        "retries": Batch.retries + 1,
        "retry_seconds": Batch.retry_seconds + delay,
        "last_error": message,
        "lease_until": utcnow() + timedelta(seconds=delay + ext.config.lease_seconds),
    }
    if step != "poll_failures":
        # Not accepted by Mailchimp (or lost there): send it again from scratch.
        values.update(status=BatchStatus.WAITING, mailchimp_batch_id=None, poll_failures=0)
    held = session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch_id, token))
        .values(values)
        .execution_options(synchronize_session=False)
    )
    if not getattr(held, "rowcount", 0):  # another worker took the batch over
        session.rollback()
        return
    count_retry(session, batch.run_id, delay, batch.retries + 1)
    session.commit()
    enqueue.schedule_batch(ext, batch_id, token, delay)


def _give_up(
    ext: McSync,
    batch: Batch,
    token: str,
    exc: Exception,
    tries: int,
    message: str,
    counter: dict[str, int],
) -> None:
    """End a batch whose step failed too often, recording every address truthfully.

    Earlier sends may have reached Mailchimp (a send that timed out, a batch whose
    results were lost), so each address is looked up: one Mailchimp holds with what we
    sent is created or updated; only the others are errors that were retried in vain.
    """
    session = ext.session
    run = session.get(Run, batch.run_id)
    if run is None:
        return
    given_up = gave_up(tries, exc)
    since = _first_sent(batch)
    gateway = gateway_for(ext)
    replies: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    outcomes: list[AddressOutcome] = []
    for email, merge_fields, language in _entries(batch.payload):
        sent = {"merge_fields": merge_fields, "status_if_new": run.status_if_new}
        if language:
            sent["language"] = language
        member, lookup_error = _look_up(gateway, run.list_id, email, ext.config.retry_delay)
        # An archived contact stays archived whatever we send (status_if_new never
        # un-archives it): that is its outcome, whether or not our send reached it.
        if member is not None and (_archived(member) or _holds_what_we_sent(member, merge_fields)):
            replies.append((email, member, sent))
            continue
        failure = given_up
        if lookup_error is not None:
            failure = TransientError(
                given_up.title, messages.LOOKUP_FAILED(detail=given_up.detail, error=lookup_error)
            )
        outcomes.append(AddressOutcome(email, Result.ERROR, error=failure, sent=sent))
    session.rollback()  # the lookups read nothing we write; start a fresh transaction
    outcomes = _held(ext, run, since, replies) + outcomes
    errors = sum(1 for o in outcomes if o.result is Result.ERROR)
    last_error = message if errors else messages.NONE_FAILED(message=message)
    ended = session.execute(
        sa.update(Batch)
        .where(leases.holds(Batch, batch.id, token))
        .values(
            status=BatchStatus.FAILED if errors else BatchStatus.DONE,
            retries=Batch.retries + 1,
            finished_operations=len(batch.payload),
            last_error=last_error,
            finished_at=utcnow(),
            lease_until=None,
            lease_token=None,
            **counter,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(ended, "rowcount", 0) != 1:
        session.rollback()
        return  # another worker holds the batch now
    counts = record(session, batch.run_id, outcomes, batch.id)
    count_ended(session, batch.run_id, done=int(not errors), failed=int(bool(errors)))
    count_retry(session, batch.run_id, 0.0, batch.retries + 1)
    session.execute(
        sa.update(Batch)
        .where(Batch.id == batch.id)
        .values(
            created=counts.get("created", 0),
            updated=counts.get("updated", 0),
            archived=counts.get("archived", 0),
            errors=counts.get("errors", 0),
        )
    )
    session.commit()
    finish_if_complete(ext, batch.run_id)


def _look_up(
    gateway: Gateway, list_id: str, email: str, retry_delay: float
) -> tuple[dict[str, Any] | None, Any]:
    """The member Mailchimp holds (or None), with the error if it could not be asked."""
    for attempt in range(1, LOOKUP_TRIES + 1):
        try:
            return gateway.get_member(list_id, email), None
        except (TransientError, SlotTimeout) as exc:
            if attempt == LOOKUP_TRIES:
                return None, exc
            retry_after = exc.retry_after if isinstance(exc, MailchimpError) else None
            time.sleep(min(backoff_seconds(attempt, retry_after, retry_delay), 10.0))
        except MailchimpError as exc:
            return None, exc
    return None, None


def _holds_what_we_sent(member: dict[str, Any], merge_fields: dict[str, Any] | None) -> bool:
    held = member.get("merge_fields") or {}
    return all(str(held.get(tag, "")) == str(value) for tag, value in (merge_fields or {}).items())
