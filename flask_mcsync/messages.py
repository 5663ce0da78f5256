"""The sentences workers store for the admin pages, and how a page reads them back.

A worker writes a run's message, a batch's or a waiting signup's last error, an outcome's
title and reason in English: it knows no shop owner's language, and the CLI, the CSV
and the logs read them as written. A page shows them in its own language:

* a constant sentence is its own msgid, marked with ``N_`` where it is written;
* a sentence with values in it (a count, a time, Mailchimp's own words) is written from
  a :class:`Stored` template declared here. The page finds the template again by
  matching the stored text against each one, then fills the translated template with
  the same values: counts in the page's number format, a value that is itself a stored
  sentence translated in turn, Mailchimp's words as Mailchimp wrote them.

The English a template writes is the English written before it existed, so rows stored by
earlier versions are read the same way. Templates are tried in the order declared here:
one that can end inside another's value (a sentence that quotes a stored error) comes
first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from .i18n import (
    DEFAULT_LOCALE,
    N_,
    NP_,
    current_locale,
    format_datetime,
    format_number,
    gettext,
    pgettext,
    translations,
)

_FIELD = re.compile(r"%\((\w+)\)s")
_TEMPLATES: list[Stored] = []


class Stored:
    """A stored sentence with values: ``TEMPLATE(count=3)`` writes its English.

    ``numbers`` are the fields that hold a whole number (matched as digits, shown in the
    page's number format); ``words`` maps a field that holds one of our own words
    ("subscribe", "cleaned") to what translates it. Any other field is read as a stored
    sentence in its own right (see :func:`translate`).
    """

    def __init__(
        self,
        msgid: str,
        numbers: tuple[str, ...] = (),
        words: Mapping[str, Callable[[str], str]] | None = None,
    ) -> None:
        self.msgid = msgid
        self.numbers = frozenset(numbers)
        self.words = dict(words or {})
        parts = _FIELD.split(msgid)
        pattern = "".join(
            re.escape(part)
            if index % 2 == 0
            else rf"(?P<{part}>\d+)"
            if part in self.numbers
            else rf"(?P<{part}>.*?)"
            for index, part in enumerate(parts)
        )
        self.pattern = re.compile(pattern, re.DOTALL)
        _TEMPLATES.append(self)

    def __call__(self, **values: Any) -> str:
        return self.msgid % values

    def translated(self, match: re.Match[str]) -> str:
        values: dict[str, str] = {}
        for name, value in match.groupdict().items():
            if name in self.numbers:
                values[name] = format_number(int(value))
            elif name in self.words:
                values[name] = self.words[name](value)
            else:
                values[name] = translate(value)
        # Not gettext(msgid, **values): a field may be called "message".
        return translations(current_locale()).gettext(self.msgid) % values


def translate(text: str | None, context: str | None = None) -> str:
    """A stored sentence in the current language, else as stored.

    ``context``: the msgctxt of a constant shown as a label (an outcome's title).
    """
    if not text:
        return ""
    if current_locale() == DEFAULT_LOCALE:
        return text
    catalog = translations(current_locale())
    found = catalog.pgettext(context, text) if context else catalog.gettext(text)
    if found != text:
        return found
    for template in _TEMPLATES:
        match = template.pattern.fullmatch(text)
        if match is not None:
            return template.translated(match)
    return text


# Mailchimp's webhook event types, as the pages name them.
EVENT_TYPE_LABELS = {
    "subscribe": NP_("event", "subscribe"),
    "unsubscribe": NP_("event", "unsubscribe"),
    "profile": NP_("event", "profile change"),
    "upemail": NP_("event", "address change"),
    "cleaned": NP_("event", "cleaned"),
    "campaign": NP_("event", "campaign"),
}


def _event_type(value: str) -> str:
    return pgettext("event", EVENT_TYPE_LABELS.get(value, value))


def _member_status(value: str) -> str:
    return gettext(value)  # "unsubscribed", "cleaned": the pages' badges say the same


def _moment(value: str) -> str:
    """A time stored as ISO 8601 ("2026-11-26T10:00:00+00:00"), as the pages show times."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return translate(value)  # "the start"
    return format_datetime(moment.astimezone(timezone.utc) if moment.tzinfo else moment)


def _outcome(value: str) -> str:
    label = pgettext("outcome", value.capitalize())  # "created": the outcome "Created"
    return label[:1].lower() + label[1:]  # within a sentence


# --- the templates, most enclosing first --------------------------------------------------

# A batch that used up its budget, each of its addresses then found in Mailchimp.
NONE_FAILED = Stored(N_("%(message)s Mailchimp holds every address of it: none failed."))
# A batch's step tried again after a passing failure: the try's number and the cause.
ATTEMPT = Stored(N_("Attempt %(tries)s: %(error)s"), numbers=("tries",))
POLL = Stored(N_("Poll %(tries)s: %(error)s"), numbers=("tries",))
RESEND = Stored(N_("Re-send %(tries)s: %(error)s"), numbers=("tries",))
RETRY_BATCH = Stored(
    N_("%(count)s address(es) failed for a passing reason and were put into a retry batch."),
    numbers=("count",),
)
# An outcome's title once a passing failure outlasted every try (batches count tries,
# auto-sync's rows attempts).
GAVE_UP_TRIES = Stored(N_("Gave up after %(tries)s tries"), numbers=("tries",))
GAVE_UP_ATTEMPTS = Stored(N_("Gave up after %(tries)s attempts"), numbers=("tries",))
LOOKUP_FAILED = Stored(
    N_("%(detail)s (Mailchimp could not say whether it holds the address: %(error)s)")
)
ACCOUNT_REFUSED = Stored(
    N_(
        "Mailchimp refused the account or audience: %(title)s. %(detail)s Check"
        " MCSYNC_API_KEY and the audience in General settings, then export again."
    )
)
NOT_QUEUED = Stored(N_("Could not queue the export: %(error)s"))
RUN_STOPPED = N_("Not finished: the run stopped (see its message).")

# Reconcile runs.
RECONCILE_WHOLE = Stored(
    N_(
        "Read %(read)s member(s) (the whole audience) since the start; %(applied)s"
        " change(s) applied to the shop."
    ),
    numbers=("read", "applied"),
)
RECONCILE_CHANGED = Stored(
    N_(
        "Read %(read)s member(s) changed since %(since)s; %(applied)s change(s) applied to"
        " the shop."
    ),
    numbers=("read", "applied"),
    words={"since": _moment},
)
# The "since" of a reconcile that had no earlier one to start from.
SINCE_THE_START = N_("the start")
RECONCILE_STOPPED = Stored(N_("Stopped after %(read)s members: %(error)s"), numbers=("read",))
RECONCILE_TAKEN_OVER = N_("Stopped: its worker went silent; a later reconcile took over.")

# A change read from Mailchimp that is older than what the shop knows.
STALE_CHANGE = Stored(
    N_("Mailchimp %(kind)s of %(changed_at)s is older than %(reason)s"),
    words={"kind": _event_type, "changed_at": _moment},
)
STALE_ALREADY_APPLIED = N_("the state already applied: ignored.")
STALE_OPTED_IN = Stored(
    N_(
        "the customer's opt-in in the shop (%(opted_in)s): the shop's newer choice"
        " stands, and auto-sync sends it."
    ),
    words={"opted_in": _moment},
)
# Auto-sync meeting someone Mailchimp holds unsubscribed or cleaned.
CONFIRMATION_SENT = Stored(
    N_(
        "The customer opted in again in the shop while Mailchimp held them %(status)s:"
        " Mailchimp sent its confirmation e-mail; they are subscribed once they confirm."
    ),
    words={"status": _member_status},
)

# Why a signup waits, or was not sent (an auto-sync row's last error).
AUTO_SYNC_OFF = N_("Auto-sync is switched off.")
NO_AUDIENCE = N_("No audience is chosen: nothing is sent until one is.")
NO_FIRST_EXPORT = N_(
    "No first export to this audience yet: the first export will read this customer from"
    " the shop, and auto-sync starts once it has completed."
)
WAITING_FOR_EXPORT = Stored(
    N_(
        "Waiting for the first export to this audience (run %(run)s) to end; then sent,"
        " unless that export already sent it."
    ),
    numbers=("run",),
)
COVERED_SENT = Stored(
    N_("Already sent by export run %(run)s (%(outcome)s): it read this customer after the signup."),
    numbers=("run",),
    words={"outcome": _outcome},
)
COVERED_SKIPPED = Stored(
    N_(
        "Already recorded as skipped by export run %(run)s: it read this customer after the signup."
    ),
    numbers=("run",),
)
COVERED_FAILED = Stored(
    N_(
        "Already tried by export run %(run)s, which recorded an error: it read this"
        " customer after the signup."
    ),
    numbers=("run",),
)
