"""The one place that records what happened to an address.

Every path ends here: a batch's results, a single sync, a skipped address. Rows are
added to the caller's session, so they commit atomically with the state change that
produced them (a batch marked done, an outbox row marked sent): a crash never leaves an
address counted twice or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from . import jsoncodec, messages
from .addresses import subscriber_hash
from .gateway import MailchimpError, was_created
from .i18n import N_, pgettext
from .i18n import gettext as _
from .models import Outcome, Run
from .statuses import Result, RunKind, SyncReason
from .times import utcnow

# What the admin pages, the CSV and the CLI call each result.
# English here (stored, and the CLI's words); the admin pages show them translated.
LABELS = messages.OUTCOME_LABELS


def outcome_label(outcome: str) -> str:
    """An outcome's label, in the page's language (English outside a request)."""
    label = LABELS.get(outcome)
    return pgettext("outcome", label) if label else outcome.capitalize()


KIND_LABELS: dict[str, str] = {
    RunKind.EXPORT: N_("Manual export"),
    RunKind.AUTO: N_("Auto-sync"),
    RunKind.RESYNC: N_("Re-sync"),
    RunKind.MAILCHIMP: N_("From Mailchimp"),
    RunKind.RECONCILE: N_("From Mailchimp (reconcile)"),
}
REASON_LABELS: dict[str, str] = {
    SyncReason.SIGNUP: N_("signup"),
    SyncReason.OPTIN: N_("newsletter opt-in"),
    SyncReason.OPTOUT: N_("opt-out"),
    SyncReason.ADDRESS_CHANGE: N_("address change"),
    SyncReason.UPDATE: N_("profile change"),
    SyncReason.RESYNC: N_("re-sync"),
}


def run_label(kind: str, reason: str | None) -> str:
    """What a sync was, e.g. "Auto-sync · opt-out" (the dashboard, diagnostic and CLI)."""
    label = _(KIND_LABELS.get(kind, kind))
    if reason and not (kind == RunKind.RESYNC and reason == SyncReason.RESYNC):
        label += f" · {_(REASON_LABELS.get(reason, reason))}"
    return label


# Which Run counter each result adds to.
COUNTER = {
    Result.CREATED: "created",
    Result.UPDATED: "updated",
    Result.UNSUBSCRIBED: "updated",
    Result.ARCHIVED: "archived",
    Result.CONFIRMATION: "confirmations",
    Result.SKIPPED: "skipped",
    Result.ERROR: "errors",
}


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which
# doubled the cost of making a batch's 1,000 outcomes. Nothing changes one once made.
@dataclass(slots=True)
class AddressOutcome:
    email: str
    result: Result
    error: MailchimpError | None = None
    skip_reason: str | None = None  # why skipped, or a note (archived, confirmation)
    mailchimp_status: str | None = None
    sent: dict[str, Any] | None = None
    # Given by a caller that already hashed the address (a batch hashes each one once).
    email_hash: str | None = None

    def described(self) -> tuple[str | None, bool, str | None]:
        """The row's error title, whether it is permanent, and its detail."""
        error = self.error
        if error:
            return error.title[:200], bool(error.permanent), error.full_detail
        # "Skipped" and the labels are shown translated (pgettext "outcome"); Mailchimp's
        # titles as they come.
        if self.result is Result.SKIPPED and self.skip_reason:
            return "Skipped", False, self.skip_reason
        # archived, confirmation: the label titles the note
        return (LABELS[self.result.value] if self.skip_reason else None), False, self.skip_reason


def _columns(
    outcomes: list[AddressOutcome], run_id: int, batch_id: int | None, now: datetime
) -> dict[str, list[Any]]:
    """The outcome rows' values, column by column (as :func:`_insert_rows` takes them).

    A value the rows share is one object repeated, which the insert converts once.
    """
    count = len(outcomes)
    described = [outcome.described() for outcome in outcomes]
    return {
        "run_id": [run_id] * count,
        "batch_id": [batch_id] * count,
        "email": [outcome.email for outcome in outcomes],
        "email_hash": [o.email_hash or subscriber_hash(o.email) for o in outcomes],
        "outcome": [outcome.result.value for outcome in outcomes],
        "permanent": [permanent for _, permanent, _ in described],
        "error_title": [title for title, _, _ in described],
        "error_detail": [detail for _, _, detail in described],
        "mailchimp_status": [outcome.mailchimp_status for outcome in outcomes],
        "sent": [outcome.sent for outcome in outcomes],
        "created_at": [now] * count,
    }


def shown(row: Outcome) -> dict[str, Any]:
    """A recorded outcome as the admin pages, the diagnostic tool and their JSON show it."""
    return {
        "at": row.created_at.isoformat(),
        "run_id": row.run_id,
        "email": row.email,
        "outcome": row.outcome,
        "permanent": row.permanent,
        "title": row.error_title,
        "detail": row.error_detail,
        "mailchimp_status": row.mailchimp_status,
    }


def run_outcomes(session: Session, run_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The outcome rows of a run, as :func:`shown` (one for an auto-sync or a re-sync)."""
    rows = session.execute(
        sa.select(Outcome).where(Outcome.run_id == run_id).order_by(Outcome.id).limit(limit)
    ).scalars()
    return [shown(o) for o in rows]


def archived_outcome(email: str, sent: dict[str, Any] | None) -> AddressOutcome:
    """A contact Mailchimp holds archived and kept so (it gets no e-mail from the audience)."""
    return AddressOutcome(
        email,
        Result.ARCHIVED,
        mailchimp_status="archived",
        sent=sent,
        skip_reason=messages.ARCHIVED_LEFT,
    )


def synced_since(
    session: Session,
    list_id: str,
    emails: list[str],
    since: datetime,
    hashes: list[str] | None = None,
) -> set[str]:
    """The subscriber hashes among ``emails`` that a sync put in this audience since ``since``.

    ``hashes``, when the caller has them, are those of ``emails`` (not computed again).

    Probes by address (``ix_mcsync_outcomes_hash_created``) and reads only the outcomes
    recorded since then, so its cost does not grow with the history. ``since`` is taken
    to the whole second, like Mailchimp's timestamps that it is compared with.
    """
    since = since.replace(microsecond=0)
    hashes = sorted(set(hashes) if hashes is not None else {subscriber_hash(e) for e in emails})
    wanted = (Result.CREATED.value, Result.UPDATED.value)
    found: dict[str, set[int]] = {}
    for email_hash, outcome, run_id in _recent_outcomes(session, hashes, since):
        if outcome in wanted:
            found.setdefault(email_hash, set()).add(run_id)
    if not found:
        return set()
    run_ids = set().union(*found.values())
    in_audience = set(
        session.execute(
            sa.select(Run.id).where(Run.id.in_(sorted(run_ids)), Run.list_id == list_id)
        ).scalars()
    )
    return {email_hash for email_hash, runs in found.items() if runs & in_audience}


# See others_wrote_since.
OTHERS_MARGIN = timedelta(seconds=60)


def others_wrote_since(session: Session, list_id: str, run_id: int, since: datetime) -> bool:
    """Whether a sync of the audience other than run ``run_id`` may have recorded an
    outcome since ``since``: one of its runs not ended, or ended since then.

    Every writer of outcomes (an export's batches, a single-address sync, a change from
    Mailchimp, a reconcile) does so within a run of the audience, and sets its
    ``finished_at`` when it ends; a run that died without ending keeps this "yes" until
    the sweep or a person ends it. Two reads of ``ix_mcsync_runs_list_finished``,
    whatever the history.
    """
    others = sa.and_(Run.list_id == list_id, Run.id != run_id)
    running = sa.select(Run.id).where(others, Run.finished_at.is_(None)).limit(1)
    # A run's end is stamped a moment before its last outcome (a single-address sync
    # records after it), and Mailchimp's clock may run ahead of ours: runs that ended a
    # while before ``since`` count too. Only more lookups, never fewer, come of it.
    recent = since - OTHERS_MARGIN
    ended = sa.select(Run.id).where(others, Run.finished_at >= recent).limit(1)
    return (
        session.execute(running).first() is not None or session.execute(ended).first() is not None
    )


def created_or_updated(
    session: Session,
    list_id: str,
    status_if_new: str,
    since: datetime,
    members: list[tuple[str, dict[str, Any]]],
    hashes: list[str] | None = None,
    run_id: int | None = None,
) -> list[Result]:
    """Created or updated, for each (address, member Mailchimp answered) of one write.

    Mailchimp's answer decides (:func:`~.gateway.was_created`): after Mailchimp lost its
    members (a restart of the sandbox, a deleted contact), what it created again is
    "created", whatever our history says. Our history only settles the one case the
    answer cannot: a member another sync created since ``since`` (the first send), so
    only the syncs recorded since then are looked up. ``hashes``, when the caller has
    them, are those of the addresses.

    ``run_id``: the run these members were written by. When no other run of the
    audience may have written since ``since`` (:func:`others_wrote_since`), there is
    nothing to look up: an export's batches skip a probe per address that way.
    """
    hashes = hashes if hashes is not None else [subscriber_hash(e) for e, _ in members]
    new = [was_created(body, status_if_new, since) for _, body in members]
    maybe_new = [email for (email, _), is_new in zip(members, new, strict=True) if is_new]
    recent = (
        synced_since(
            session,
            list_id,
            maybe_new,
            since,
            hashes=[h for h, is_new in zip(hashes, new, strict=True) if is_new],
        )
        if maybe_new and (run_id is None or others_wrote_since(session, list_id, run_id, since))
        else set()
    )
    return [
        Result.CREATED if is_new and email_hash not in recent else Result.UPDATED
        for email_hash, is_new in zip(hashes, new, strict=True)
    ]


def _recent_outcomes(
    session: Session, hashes: list[str], since: datetime
) -> Iterator[tuple[str, str, int]]:
    """(hash, outcome, run) of the outcomes of ``hashes`` recorded since ``since``.

    No join and no condition on the outcome: either would lead a database without
    statistics to scan every earlier outcome of the run or of the outcome kind instead
    of probing by address.
    """
    if session.connection().dialect.name == "postgresql":
        # Without statistics PostgreSQL reads "hash IN (900 values)" as most of the
        # table and scans all of it, for every batch: a first export then costs the
        # square of its size. One probe of ix_mcsync_outcomes_hash_created per address
        # instead; OFFSET 0 keeps the planner from merging the probe into a join.
        # The hashes go as one array literal (hex digits need no quoting): the driver's
        # dumping of a 1,000-element list was ~2 % of a worker's CPU.
        literal = sa.bindparam("hashes", "{" + ",".join(hashes) + "}", type_=sa.Text)
        wanted = (
            sa.func.unnest(sa.cast(literal, postgresql.ARRAY(sa.String)))
            .table_valued("email_hash")
            .render_derived()
        )
        probe = (
            sa.select(Outcome.email_hash, Outcome.outcome, Outcome.run_id)
            .where(Outcome.email_hash == wanted.c.email_hash, Outcome.created_at >= since)
            .offset(0)
            .lateral()
        )
        yield from session.execute(sa.select(probe).select_from(wanted).join(probe, sa.true()))
        return
    for start in range(0, len(hashes), 900):  # stay under SQLite's bound-parameter limit
        chunk = hashes[start : start + 900]
        yield from session.execute(
            sa.select(Outcome.email_hash, Outcome.outcome, Outcome.run_id).where(
                Outcome.email_hash.in_(chunk), Outcome.created_at >= since
            )
        )


def record(
    session: Session,
    run_id: int,
    outcomes: list[AddressOutcome],
    batch_id: int | None = None,
    also: dict[str, int] | None = None,
    bump: bool = True,
) -> dict[str, int]:
    """Add outcome rows and bump the run's counters; the caller commits.

    ``also``: other counters of the run to add to in the same UPDATE (a batch counts
    itself done with its outcomes: one statement less per batch). ``bump=False``: the
    caller wrote the counters with the run (a single-address run, inserted whole).
    Returns the counts of the outcomes added, by counter name.
    """
    counts: dict[str, int] = {}
    if outcomes:
        now = utcnow()  # one batch's rows are recorded at one moment
        _insert_rows(session, _columns(outcomes, run_id, batch_id, now))
        for outcome in outcomes:
            name = COUNTER[outcome.result]
            counts[name] = counts.get(name, 0) + 1
    added = {**counts, **{name: n for name, n in (also or {}).items() if n}}
    if added and bump:
        # Increment in SQL, not in Python: several workers finish batches of one run at once.
        session.execute(
            sa.update(Run)
            .where(Run.id == run_id)
            .values({name: getattr(Run, name) + n for name, n in added.items()})
        )
    return counts


_NOTHING = object()


def _converted(values: list[Any], convert: Any) -> list[Any]:
    """One column's values as the driver takes them, each distinct object converted
    once: the rows of a batch share one timestamp, one run id, often one status."""
    if convert is None or not values:
        return values
    first = values[0]
    if all(value is first for value in values):
        return [convert(first)] * len(values)
    converted: list[Any] = []
    last: Any = _NOTHING
    done: Any = None
    for value in values:
        if value is not last:
            last, done = value, convert(value)
        converted.append(done)
    return converted


# COPY's text format: these four characters are written escaped, everything else as is.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One value as a field of COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    # Most values (addresses, hashes, outcome names) hold none of the four: skip the copy.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _as_copy_text(convert: Any) -> Any:
    """A column's conversion (if any) followed by :func:`_copy_text`, given to
    :func:`_converted`, so each distinct value is formatted once."""

    def text(value: Any) -> str:
        return _copy_text(value if convert is None else convert(value))

    return text


def _json_text(dumps: Any) -> Any:
    """``dumps`` giving text: a host's serializer may return bytes (orjson does), which
    psycopg sends as they are and COPY text must hold as characters."""

    def encode(value: Any) -> str:
        text = dumps(value)
        return text.decode() if isinstance(text, bytes) else text

    return encode


def _insert_rows(session: Session, columns: dict[str, list[Any]]) -> None:
    """Insert outcome rows, given column by column, in the session's transaction: COPY on
    PostgreSQL, else one executemany of plain tuples.

    A batch records 1,000 rows: through the ORM's bulk insert, the per-row work in
    Python (a dict per row, converted column by column) cost more than the database's.
    Here each column is converted as a list, and its repeated values once. On PostgreSQL
    the rows go as one block of COPY text built here: the driver's row-by-row COPY
    formatted each of a batch's 11,000 values on its own.
    """
    connection = session.connection()
    dialect = connection.dialect
    table = Outcome.__table__
    targets = [column for column in table.columns if not column.primary_key]
    # The JSON of what was sent: with the engine's serializer if the host gave one, else
    # as the batch's own JSON is (the standard library's, SQLAlchemy's default, cost a
    # third of converting a batch's rows). Other columns: their own conversion, if any.
    host_json = jsoncodec.host_serializer(dialect)
    json_text = _json_text(host_json or jsoncodec.dumps)
    copy = dialect.name == "postgresql" and dialect.driver == "psycopg"

    def conversion(column: sa.ColumnElement[Any]) -> Any:
        if isinstance(column.type, sa.JSON) and (copy or not host_json):
            return json_text
        return column.type.dialect_impl(dialect).bind_processor(dialect)

    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(column.name) for column in targets)
    target = f"{quote.format_table(table)} ({names})"
    if copy:
        texts = [
            _converted(columns[column.name], _as_copy_text(conversion(column)))
            for column in targets
        ]
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(f"COPY {target} FROM STDIN") as block:
            block.write("\n".join(map("\t".join, zip(*texts, strict=True))) + "\n")
        return
    values = [_converted(columns[column.name], conversion(column)) for column in targets]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"INSERT INTO {target} VALUES ({', '.join([mark] * len(targets))})",
        list(zip(*values, strict=True)),
    )
