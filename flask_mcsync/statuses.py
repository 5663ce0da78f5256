"""The statuses and kinds our rows carry, as ``str`` enums.

The database columns stay plain strings (no migration, and a row written by an older
version still reads): each member *is* its stored string, so ``run.status ==
RunStatus.FAILED`` holds for a row just loaded, a member can be written to a column or
bound in a query as it is, and ``json.dumps``, f-strings and CSV print the bare value.

Infrastructure: this module imports nothing of ours. Mailchimp's own words (a member's
``subscribed``/``cleaned``, a batch's ``finished``) are not here: they are its, not ours.
"""

from __future__ import annotations

import enum


class StoredStr(str, enum.Enum):
    """A value stored as its string; ``str()`` and ``format()`` give that string.

    (``enum.StrEnum`` does the same from Python 3.11; 3.10 is still supported.)
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return str(self.value).__format__(spec)


class RunStatus(StoredStr):
    """``mcsync_runs.status``."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class BatchStatus(StoredStr):
    """``mcsync_batches.status``."""

    WAITING = "waiting"
    SENDING = "sending"
    PROCESSING = "processing"  # Mailchimp holds the batch and works through it
    DONE = "done"
    FAILED = "failed"


class ChunkStatus(StoredStr):
    """A key range of a run's planning (:class:`~.models.PlanChunk`)."""

    WAITING = "waiting"
    DONE = "done"


class OutboxStatus(StoredStr):
    """``mcsync_outbox.status``: waiting (pending, sending), then how it ended."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    IGNORED = "ignored"


class EventStatus(StoredStr):
    """``mcsync_webhook_events.status``."""

    RECEIVED = "received"
    APPLYING = "applying"
    APPLIED = "applied"
    STALE = "stale"
    IGNORED = "ignored"
    INVALID = "invalid"


class RunKind(StoredStr):
    """``mcsync_runs.kind``: what started the run."""

    EXPORT = "export"  # a manual export of the whole shop
    AUTO = "auto"  # auto-sync of one address
    RESYNC = "resync"  # the diagnostic tool's re-sync of one address
    MAILCHIMP = "mailchimp"  # one webhook event, applied to the shop
    RECONCILE = "reconcile"  # Mailchimp's changes read back, applied to the shop


class SyncReason(StoredStr):
    """``mcsync_runs.sync_reason``: what a single sync was, in the shop's words."""

    SIGNUP = "signup"
    OPTIN = "optin"
    OPTOUT = "optout"
    ADDRESS_CHANGE = "address_change"
    UPDATE = "update"
    RESYNC = "resync"


class OutboxAction(StoredStr):
    """``mcsync_outbox.action``: what the shop said of the address."""

    SIGNUP = "signup"  # a new customer or subscriber
    OPTIN = "optin"  # the newsletter box ticked
    OPTOUT = "optout"  # the newsletter box unticked
    CHANGE = "change"  # a profile change (name, address)


# The shop's actions that say the person wants the newsletter, and those that say
# anything about it (a profile change says nothing).
OPT_INS = frozenset({OutboxAction.SIGNUP, OutboxAction.OPTIN})
NEWSLETTER_SAID = frozenset({*OPT_INS, OutboxAction.OPTOUT})


class SendAction(StoredStr):
    """What a single sync does with one address (kept in its outcome's ``sent``)."""

    UPSERT = "upsert"
    UNSUBSCRIBE = "unsubscribe"
    SKIP = "skip"


class Handled(StoredStr):
    """What a job did with the row it was given (an outbox row, a webhook event): a
    drain and ``flask mcsync flush`` count them. Not stored."""

    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    IGNORED = "ignored"
    COVERED = "covered"  # an export sent the address
    HELD = "held"  # waits for the first export
    RETRY = "retry"  # tried again after a backoff
    BUSY = "busy"  # another worker holds the row


class Result(StoredStr):
    """``mcsync_outcomes.outcome``: what became of one address in one run."""

    CREATED = "created"
    UPDATED = "updated"
    UNSUBSCRIBED = "unsubscribed"
    # Mailchimp holds the contact archived and left it so (only an explicit status would
    # un-archive it, which no sync sends): neither created nor updated.
    ARCHIVED = "archived"
    # A fresh opt-in in the shop of someone Mailchimp held unsubscribed: set to pending,
    # so Mailchimp sent its confirmation e-mail.
    CONFIRMATION = "confirmation"
    SKIPPED = "skipped"
    ERROR = "error"


RUN_ENDED = frozenset({RunStatus.FINISHED, RunStatus.FAILED})
BATCH_ENDED = frozenset({BatchStatus.DONE, BatchStatus.FAILED})
BATCH_ACTIVE = frozenset({BatchStatus.SENDING, BatchStatus.PROCESSING})
BATCH_NOT_ENDED = frozenset({BatchStatus.WAITING, *BATCH_ACTIVE})
# An outbox row still to send: due, or claimed by a worker that may yet send it.
OUTBOX_WAITING = frozenset({OutboxStatus.PENDING, OutboxStatus.SENDING})
