"""Label tables several admin pages share (statuses, batch steps, outcomes, member statuses).

Stored in English and marked for translation; :func:`translated` gives a table in the
page's language.
"""

from __future__ import annotations

from ..i18n import N_, NP_
from ..i18n import gettext as _
from ..statuses import BatchStatus, EventStatus, RunStatus

STATUS_LABELS: dict[str, str] = {
    RunStatus.QUEUED: N_("Queued"),
    RunStatus.RUNNING: N_("Running"),
    RunStatus.FINISHED: N_("Finished"),
    RunStatus.FAILED: N_("Failed"),
}
BATCH_LABELS: dict[str, str] = {
    BatchStatus.WAITING: N_("Waiting"),
    BatchStatus.SENDING: N_("Sending"),
    BatchStatus.PROCESSING: N_("Processing at Mailchimp"),
    BatchStatus.DONE: N_("Done"),
    BatchStatus.FAILED: N_("Failed"),
}
# One address's outcome (a badge): translated with pgettext("outcome", ...).
OUTCOME_LABELS = {
    "created": NP_("outcome", "Created"),
    "updated": NP_("outcome", "Updated"),
    "unsubscribed": NP_("outcome", "Unsubscribed"),
    "skipped": NP_("outcome", "Skipped"),
    "error": NP_("outcome", "Error"),
}
# Mailchimp's member statuses, as its own French interface names them.
MEMBER_STATUS_LABELS = {
    "subscribed": N_("subscribed"),
    "unsubscribed": N_("unsubscribed"),
    "cleaned": N_("cleaned"),
    "pending": N_("pending"),
    "transactional": N_("transactional"),
    "archived": N_("archived"),
}

# Who Mailchimp's webhook reports changes made by (its "sources"), in the card's words.
WEBHOOK_SOURCE_LABELS = {
    "user": N_("the person"),
    "admin": N_("the account's admins"),
    "api": N_("the API"),
}
# A received webhook event's state: translated with pgettext("event", ...).
EVENT_STATUS_LABELS: dict[str, str] = {
    EventStatus.RECEIVED: NP_("event", "received"),
    EventStatus.APPLYING: NP_("event", "being applied"),
    EventStatus.APPLIED: NP_("event", "applied"),
    EventStatus.STALE: NP_("event", "stale"),
    EventStatus.IGNORED: NP_("event", "ignored"),
    EventStatus.INVALID: NP_("event", "invalid"),
}


def translated(labels: dict[str, str]) -> dict[str, str]:
    """A label table in the page's language."""
    return {key: _(label) for key, label in labels.items()}
