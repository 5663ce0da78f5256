"""Label tables several admin pages share (statuses, batch steps, outcomes, member statuses).

Stored in English and marked for translation; :func:`translated` gives a table in the
page's language.
"""

from __future__ import annotations

from ..i18n import N_, NP_
from ..i18n import gettext as _

STATUS_LABELS = {
    "queued": N_("Queued"),
    "running": N_("Running"),
    "finished": N_("Finished"),
    "failed": N_("Failed"),
}
BATCH_LABELS = {
    "waiting": N_("Waiting"),
    "sending": N_("Sending"),
    "processing": N_("Processing at Mailchimp"),
    "done": N_("Done"),
    "failed": N_("Failed"),
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


def translated(labels: dict[str, str]) -> dict[str, str]:
    """A label table in the page's language."""
    return {key: _(label) for key, label in labels.items()}
