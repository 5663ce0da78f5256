"""The sentences workers store for the admin pages, and how a page reads them back.

A worker writes a run's message, a batch's or a waiting signup's last error, an outcome's
title and reason in English: it knows no shop owner's language, and the CLI, the CSV
and the logs read them as written. A page shows them in its own language:

* a constant sentence is its own msgid, marked with ``N_`` where it is written (and
  declared with :func:`ours` when other stored sentences quote it);
* a sentence with values in it (a count, a time, an error) is written from a
  :class:`Stored` template declared here. The page finds the template again by matching
  the stored text against each one, then fills the translated template with the same
  values: counts in the page's number format, times as the page shows times, our own
  words and sentences translated, and everything else, Mailchimp's titles and details
  first, as it was written, even where it happens to read like one of our msgids
  (Mailchimp's "Not Found" is not our error page's).

The English a template writes is the English written before it existed, so rows stored by
earlier versions are read the same way. Templates are tried in the order declared here:
one that can end inside another's value (a sentence that quotes a stored error) comes
first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
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
from .times import parse_time

_FIELD = re.compile(r"%\((\w+)\)s")
_TEMPLATES: list[Stored] = []


# A page stops reading values as sentences this deep: a stored text is at most a few
# sentences nested (a batch's error quoting a try quoting Mailchimp), and a hostile or
# corrupt one must not exhaust the stack.
MAX_DEPTH = 4


class Stored:
    """A stored sentence with values: ``TEMPLATE(count=3)`` writes its English.

    A field is shown as it was written (Mailchimp's words, an address, a domain) unless
    declared: ``numbers`` hold a whole number (matched as digits, shown in the page's
    number format); ``ids`` a run's number (digits, shown as the pages show ids:
    "synchronisation 1234"); ``sentences`` hold a stored sentence, ours read in turn
    (an error as "title: detail" too, see :func:`error_text`), anything else as written;
    ``words`` map a field holding one of our words ("subscribe", "cleaned") to what
    translates it.
    """

    def __init__(
        self,
        msgid: str,
        numbers: tuple[str, ...] = (),
        sentences: tuple[str, ...] = (),
        words: Mapping[str, Callable[[str], str]] | None = None,
        ids: tuple[str, ...] = (),
    ) -> None:
        self.msgid = msgid
        self.numbers = frozenset(numbers)
        self.ids = frozenset(ids)
        self.sentences = frozenset(sentences)
        self.words = dict(words or {})
        parts = _FIELD.split(msgid)
        pattern = "".join(
            re.escape(part)
            if index % 2 == 0
            else rf"(?P<{part}>\d{{1,18}})"
            if part in self.numbers or part in self.ids
            else rf"(?P<{part}>.*?)"
            for index, part in enumerate(parts)
        )
        self.pattern = re.compile(pattern, re.DOTALL)
        _TEMPLATES.append(self)

    def __call__(self, **values: Any) -> str:
        return self.msgid % values

    def translated(self, match: re.Match[str], depth: int) -> str:
        values: dict[str, str] = {}
        for name, value in match.groupdict().items():
            if name in self.numbers:
                values[name] = format_number(int(value))
            elif name in self.sentences:
                values[name] = _ours(value, depth + 1)
            elif name in self.words:
                values[name] = self.words[name](value)
            else:
                values[name] = value
        # Not gettext(msgid, **values): a field may be called "message".
        return translations(current_locale()).gettext(self.msgid) % values


def translate(text: str | None, context: str | None = None) -> str:
    """A stored sentence in the current language, else as stored.

    ``context``: the msgctxt of a constant shown as a label (an outcome's title). A text
    that is none of ours (Mailchimp's title or detail) is shown as written.
    """
    if not text:
        return ""
    if current_locale() == DEFAULT_LOCALE:
        return text
    catalog = translations(current_locale())
    found = catalog.pgettext(context, text) if context else catalog.gettext(text)
    if found != text:
        return found
    return _ours(text, 0)


def _ours(text: str, depth: int) -> str:
    """``text`` translated if it is one of our sentences: a constant of :data:`OURS`, a
    template's, or an error with a title or detail of ours; else as written."""
    if depth > MAX_DEPTH:
        return text
    if text in OURS:
        found = translations(current_locale()).gettext(text)
        if found != text:
            return found
    for template in _TEMPLATES:
        match = template.pattern.fullmatch(text)
        if match is not None:
            return template.translated(match, depth)
    return error_text(text, depth)


def error_text(text: str, depth: int = 0) -> str:
    """An error stored as "title: detail" (``str()`` of our errors), the parts that are
    ours translated: a title of ours ("Timeout", "Gave up after 5 tries"), a detail of
    ours under Mailchimp's title ("HTTP 503: Mailchimp is busy..."). Mailchimp's own
    title and detail stay as written, with their colon."""
    title, colon, detail = text.partition(": ")
    if not colon or depth > MAX_DEPTH:
        return text
    ours = title in OURS or any(t.pattern.fullmatch(title) for t in _TITLES)
    said = _ours(detail, depth + 1)
    if not ours and said == detail:
        return text
    return translations(current_locale()).gettext(ERROR_TEXT) % {
        "title": _ours(title, depth + 1) if ours else title,
        "detail": said,
    }


# Mailchimp's webhook event types, as the pages name them.
EVENT_TYPE_LABELS = {
    "subscribe": NP_("event", "subscribe"),
    "unsubscribe": NP_("event", "unsubscribe"),
    "profile": NP_("event", "profile change"),
    "upemail": NP_("event", "address change"),
    "cleaned": NP_("event", "cleaned"),
    "campaign": NP_("event", "campaign"),
}
# What the admin pages, the CSV and the CLI call each result of one address.
OUTCOME_LABELS = {
    "created": NP_("outcome", "Created"),
    "updated": NP_("outcome", "Updated"),
    "unsubscribed": NP_("outcome", "Unsubscribed"),
    "archived": NP_("outcome", "Archived in Mailchimp: left archived"),
    "confirmation": NP_("outcome", "Confirmation e-mail sent"),
    "skipped": NP_("outcome", "Skipped"),
    "error": NP_("outcome", "Error"),
}
# The kinds of exclusion rule (rules.RuleKind's labels), as a rule's description starts
# ("whole domain 'x.com'").
RULE_KIND_LABELS = {
    "address": N_("Exact address"),
    "domain": N_("Whole domain"),
    "pattern": N_("Pattern"),
}

#: Our own sentences that a stored text may quote: a page translates these inside
#: another sentence, and only these (a value that merely equals some other msgid, such
#: as Mailchimp's title "Not Found", stays as written).
OURS: set[str] = set()


def ours(msgid: str) -> str:
    """Declare one of our constant sentences that stored texts quote (see :data:`OURS`)."""
    OURS.add(msgid)
    return msgid


def _event_type(value: str) -> str:
    return pgettext("event", EVENT_TYPE_LABELS.get(value, value))


def _member_status(value: str) -> str:
    return gettext(value)  # "unsubscribed", "cleaned": the pages' badges say the same


def _outcome(value: str) -> str:
    label = pgettext("outcome", OUTCOME_LABELS.get(value, value))
    return label[:1].lower() + label[1:]  # within a sentence


def _rule(value: str) -> str:
    """A rule's description ("whole domain 'x.com'"): its kind in the page's words."""
    for kind in RULE_KIND_LABELS.values():
        if value.startswith(kind.lower() + " "):
            return gettext(kind).lower() + value[len(kind) :]
    return value


def _moment(value: str) -> str:
    """A time stored as ISO 8601 ("2026-11-26T10:00:00+00:00"), as the pages show times."""
    moment = parse_time(value)
    if moment is None:
        return _ours(value, 1)  # "the start"
    return format_datetime(moment)  # in UTC, saying so


# --- our errors: "title: detail", as str() of an error gives them ------------------------

ERROR_TEXT = N_("%(title)s: %(detail)s")
TIMEOUT = ours(N_("Timeout"))
TIMEOUT_DETAIL = ours(N_("Mailchimp did not answer within the request timeout."))
CONNECTION_FAILED = ours(N_("Connection failed"))
CONNECTION_DETAIL = Stored(
    N_("Could not reach Mailchimp (%(error)s: check the network and MCSYNC_API_URL).")
)
BUSY = ours(N_("Busy"))
BUSY_DETAIL = ours(N_("Mailchimp is busy or unavailable for the moment."))
SLOTS_BUSY = Stored(
    N_(
        "All %(limit)s Mailchimp connections stayed busy for %(seconds)s s; the job will be"
        " retried."
    ),
    numbers=("limit",),
)
# The webhook card's answer when Mailchimp could not be asked (the card and the CLI).
WEBHOOK_UNKNOWN = Stored(
    N_("Could not ask Mailchimp whether the webhook is in place: %(error)s"),
    sentences=("error",),
)
# Redis holds the connection slots: without it no request to Mailchimp is made.
REDIS_DOWN = Stored(
    N_(
        "Redis could not be reached (%(error)s); it shares the connection limit with the"
        " workers. Check MCSYNC_REDIS_URL."
    )
)
BATCH_GONE = ours(N_("Batch gone"))
BATCH_GONE_DETAIL = Stored(
    N_("Mailchimp no longer knows batch %(batch)s (%(title)s); the batch will be re-sent.")
)
RESULTS_EXPIRED = ours(N_("Batch results expired"))
RESULTS_EXPIRED_DETAIL = ours(
    N_("Mailchimp no longer has this batch's results; the batch will be re-sent.")
)
# An empty-body 403 is Mailchimp's edge throttling a burst at very high volume (reported by
# integrations doing bulk syncs; a real permission problem comes with a JSON "Forbidden"
# body). So it is retried with backoff, and the message says what to check if it lasts.
EMPTY_403_DETAIL = ours(
    N_(
        "Mailchimp refused the request without saying why (HTTP 403, empty body). At high"
        " volume this is its edge holding back a burst: it is retried with backoff. If it"
        " lasts, check the API key and the account's IP access restrictions."
    )
)
# An outcome's title once a passing failure outlasted every try (batches count tries,
# auto-sync's rows attempts).
GAVE_UP_TRIES = Stored(N_("Gave up after %(tries)s tries"), numbers=("tries",))
GAVE_UP_ATTEMPTS = Stored(N_("Gave up after %(tries)s attempts"), numbers=("tries",))
_TITLES = (GAVE_UP_TRIES, GAVE_UP_ATTEMPTS)

# --- the templates, most enclosing first --------------------------------------------------

# A batch that used up its budget, each of its addresses then found in Mailchimp.
NONE_FAILED = Stored(
    N_("%(message)s Mailchimp holds every address of it: none failed."), sentences=("message",)
)
# A batch's step tried again after a passing failure: the try's number and the cause.
ATTEMPT = Stored(N_("Attempt %(tries)s: %(error)s"), numbers=("tries",), sentences=("error",))
POLL = Stored(N_("Poll %(tries)s: %(error)s"), numbers=("tries",), sentences=("error",))
RESEND = Stored(N_("Re-send %(tries)s: %(error)s"), numbers=("tries",), sentences=("error",))
RETRY_BATCH = Stored(
    N_("%(count)s address(es) failed for a passing reason and were put into a retry batch."),
    numbers=("count",),
)
LOOKUP_FAILED = Stored(
    N_("%(detail)s (Mailchimp could not say whether it holds the address: %(error)s)"),
    sentences=("detail", "error"),
)
ACCOUNT_REFUSED = Stored(
    N_(
        "Mailchimp refused the account or audience: %(title)s. %(detail)s Check"
        " MCSYNC_API_KEY and the audience in General settings, then export again."
    )
)
# settings.NoAudience's sentence: an auto-sync row's error, an outcome's title.
NO_AUDIENCE_CHOSEN = ours(
    N_(
        "No audience is chosen: pick one in the General settings (or run"
        " 'flask mcsync settings --list ID') first."
    )
)
NOT_QUEUED = Stored(N_("Could not queue the export: %(error)s"))
RESYNC_NOT_QUEUED = Stored(
    N_("Could not queue the re-sync (%(error)s): check that Redis is running.")
)
RUN_STOPPED = ours(N_("Not finished: the run stopped (see its message)."))
ARCHIVED_LEFT = ours(
    N_(
        "Archived in Mailchimp: left archived. Restore the contact in Mailchimp if it"
        " should receive e-mails again."
    )
)

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
SINCE_THE_START = ours(N_("the start"))
RECONCILE_STOPPED = Stored(
    N_("Stopped after %(read)s members: %(error)s"), numbers=("read",), sentences=("error",)
)
RECONCILE_TAKEN_OVER = ours(N_("Stopped: its worker went silent; a later reconcile took over."))

# A change read from Mailchimp that is older than what the shop knows.
STALE_CHANGE = Stored(
    N_("Mailchimp %(kind)s of %(changed_at)s is older than %(reason)s"),
    sentences=("reason",),
    words={"kind": _event_type, "changed_at": _moment},
)
STALE_ALREADY_APPLIED = ours(N_("the state already applied: ignored."))
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
AUTO_SYNC_OFF = ours(N_("Auto-sync is switched off."))
NO_AUDIENCE = ours(N_("No audience is chosen: nothing is sent until one is."))
NO_FIRST_EXPORT = ours(
    N_(
        "No first export to this audience yet: the first export will read this customer"
        " from the shop, and auto-sync starts once it has completed."
    )
)
WAITING_FOR_EXPORT = Stored(
    N_(
        "Waiting for the first export to this audience (run %(run)s) to end; then sent,"
        " unless that export already sent it."
    ),
    ids=("run",),
)
COVERED_SENT = Stored(
    N_("Already sent by export run %(run)s (%(outcome)s): it read this customer after the signup."),
    ids=("run",),
    words={"outcome": _outcome},
)
COVERED_SKIPPED = Stored(
    N_(
        "Already recorded as skipped by export run %(run)s: it read this customer after the signup."
    ),
    ids=("run",),
)
COVERED_FAILED = Stored(
    N_(
        "Already tried by export run %(run)s, which recorded an error: it read this"
        " customer after the signup."
    ),
    ids=("run",),
)

# Why an address is not sent, said by the planner as it reads the shop (the same
# msgids as in addresses and eligibility, which say them in the page's language when a
# page asks; a worker writes them in English).
Stored(N_("The address is longer than %(max)s characters."), numbers=("max",))
Stored(N_("The part before the '@' is longer than %(max)s characters."), numbers=("max",))
Stored(N_("The domain ends in '.%(tld)s', which is not a top-level domain."))
Stored(
    N_("'%(domain)s' is a domain reserved for examples: Mailchimp refuses its addresses as fake.")
)
Stored(
    N_(
        "'.%(tld)s' is a reserved top-level domain that receives no e-mail: Mailchimp"
        " refuses its addresses as fake."
    )
)
Stored(N_("Excluded by the %(rule)s rule."), words={"rule": _rule})
