"""Auto-sync's signup side: the signal receivers, the outbox row, the after-commit hand-off.

On the signup's request the hook only notes the change in the host's session. SQLAlchemy
session events then do the rest: just before the commit one INSERT writes the outbox
rows in the host's transaction, after the commit their ids go into the app's
:mod:`handoff` queue; a rollback (of the transaction, or of the savepoint the signal
came in) forgets them, so a signup that did not happen sends nothing. No network on
the signup's path: a background thread hands the ids to Redis, so a dead or hung Redis
costs a signup nothing. When Redis does not answer, the rows wait in the database and the workers'
sweep (or ``flask mcsync flush``) sends them later; after a Redis failure the thread
stops trying for a short while, so a backlog is not paid one socket timeout at a time.

The receivers and session events are attached by :func:`listen`, which ``init_app``
calls. The sending side is :mod:`outbox`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from blinker import Signal
from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.orm import Session, SessionTransaction

from .addresses import normalize, subscriber_hash
from .app_state import McSync, state
from .handoff import handoff_for
from .models import OutboxItem
from .outbox import enqueue_items
from .signals import FROM_MAILCHIMP, subscriber_changed, subscriber_signed_up
from .statuses import OutboxAction

log = logging.getLogger(__name__)

PENDING_KEY = "mcsync_outbox_items"
IDS_KEY = "mcsync_outbox_ids"


@dataclass
class Pending:
    """A change to write to the outbox when the host's transaction commits."""

    action: str
    email: str
    email_hash: str
    previous_email: str | None
    # The innermost savepoint open when the signal came: rolling it back forgets us.
    savepoint: SessionTransaction | None


def add(
    ext: McSync,
    *,
    subscriber: Any = None,
    email: str | None = None,
    previous_email: str | None = None,
    action: str = OutboxAction.SIGNUP,
) -> Pending | None:
    """Note an outbox row for this subscriber in the host's session (no I/O).

    The row is written by one INSERT just before the host's commit, inside its
    transaction (:func:`_write_rows`). Repeated calls for one address in one transaction
    are coalesced into one row.
    Nothing is added while a change from Mailchimp is being applied (no echo).
    """
    # The scoped session's current Session (the proxy has no get_nested_transaction).
    session: Session = ext.db.session()
    if session.info.get(FROM_MAILCHIMP):
        return None
    if email is None and subscriber is not None:
        email = getattr(subscriber, ext.require_source().email, None)
    if not email:
        log.warning("mcsync: a %s signal came without an address; nothing to sync.", action)
        return None
    pending: dict[str, Pending] = session.info.setdefault(PENDING_KEY, {})
    key = normalize(email)
    item = pending.get(key)
    if item is not None:
        # A change after a signup in the same transaction is still a signup; a newsletter
        # opt-in or opt-out says more than a profile change (or an earlier opt-in/out).
        item.previous_email = item.previous_email or previous_email
        if (
            action in (OutboxAction.OPTIN, OutboxAction.OPTOUT)
            and item.action != OutboxAction.SIGNUP
        ):
            item.action = action
        return item
    item = pending[key] = Pending(
        action=action,
        email=email.strip(),
        email_hash=subscriber_hash(key),
        previous_email=previous_email.strip() if previous_email else None,
        savepoint=session.get_nested_transaction(),
    )
    return item


_OUTBOX = cast(sa.Table, OutboxItem.__table__)
#: The columns a signup fills; every other column takes the model's default (or NULL).
_GIVEN = ("action", "email", "email_hash", "previous_email")


class _OutboxInsert:
    """The outbox row's INSERT for one dialect, as the driver's own SQL text (built once).

    Executed with ``exec_driver_sql``: engine events, logging and SQLAlchemy's error
    wrapping apply as to any statement, but a Core INSERT's work on every execution is
    skipped (cache key, parameter construction, its Python defaults one column at a
    time, the RETURNING result's metadata). That work was most of the hook's CPU on a
    signup (benchmarks/README.md, bench_signup). The defaults are read from the model
    here, so a column added with one is filled as an ORM insert would fill it.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        # SQLite's cursor knows the new id: RETURNING would only add a result to read.
        self.returning = not (isinstance(dialect, DefaultDialect) and dialect.postfetch_lastrowid)
        statement = sa.insert(_OUTBOX)
        if self.returning:
            statement = statement.returning(_OUTBOX.c.id)
        compiled = statement.compile(dialect=dialect, column_keys=list(_GIVEN))
        self.sql = str(compiled)
        self.names: list[str] | None = None if compiled.positional else list(compiled.binds)
        order = compiled.positiontup if compiled.positional else self.names
        assert order is not None
        # Per parameter: where its value comes from, and the type's bind processor.
        self.slots = [(_SOURCES[name], _processor(name, dialect)) for name in order]

    def params(self, item: Pending) -> tuple[Any, ...] | dict[str, Any]:
        made: dict[Callable[[], Any], Any] = {}  # one now() for all the row's timestamps
        values = []
        for (kind, source), process in self.slots:
            if kind == "given":
                value = getattr(item, source)
            elif kind == "call":
                value = made.get(source, made)
                if value is made:
                    value = made[source] = source()
            else:
                value = source
            values.append(value if process is None or value is None else process(value))
        return tuple(values) if self.names is None else dict(zip(self.names, values, strict=True))

    def write(self, connection: sa.Connection, item: Pending) -> int:
        result = connection.exec_driver_sql(self.sql, self.params(item))
        row_id = result.scalar_one() if self.returning else result.lastrowid
        return int(row_id)


def _value_sources() -> dict[str, tuple[str, Any]]:
    """Where each value of the outbox INSERT comes from: the signup, or the model's default.

    Read at import, so a default the INSERT cannot compute fails at start-up, not on a
    signup.
    """
    sources: dict[str, tuple[str, Any]] = {name: ("given", name) for name in _GIVEN}
    for column in _OUTBOX.c:
        default = column.default
        if column.name in sources or default is None:
            continue
        # SQLAlchemy wraps a default that takes no context: only those can be called here.
        plain = getattr(getattr(default, "arg", None), "__wrapped__", None)
        if isinstance(default, sa.ColumnDefault) and default.is_scalar:
            sources[column.name] = ("constant", default.arg)
        elif isinstance(default, sa.ColumnDefault) and default.is_callable and callable(plain):
            sources[column.name] = ("call", plain)
        else:
            raise TypeError(f"mcsync_outbox.{column.name}: the hook cannot compute its default")
    return sources


_SOURCES = _value_sources()


def _processor(name: str, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    column_type = _OUTBOX.c[name].type
    return column_type.dialect_impl(dialect).bind_processor(dialect)


_inserts: weakref.WeakKeyDictionary[sa.Dialect, _OutboxInsert] = weakref.WeakKeyDictionary()


def _insert_for(dialect: sa.Dialect) -> _OutboxInsert:
    found = _inserts.get(dialect)
    if found is None:
        found = _inserts[dialect] = _OutboxInsert(dialect)
    return found


def _write_rows(session: Session) -> None:
    # In the host's transaction, just before its COMMIT: the signup and its outbox row
    # commit or roll back together. Not ORM objects: the unit of work's bookkeeping for a
    # second mapper cost a signup more than the INSERT itself.
    pending: dict[str, Pending] | None = session.info.pop(PENDING_KEY, None)
    if not pending:
        return
    connection = session.connection()
    insert = _insert_for(connection.dialect)
    ids: list[int] = session.info.setdefault(IDS_KEY, [])
    ids.extend(insert.write(connection, item) for item in pending.values())


def _enqueue_committed(session: Session) -> None:
    ids = session.info.pop(IDS_KEY, None)
    if ids:
        handoff_for(state(), enqueue_items).submit(sorted(ids))


def _forget_savepoint(session: Session, previous_transaction: SessionTransaction) -> None:
    # A savepoint rolled back (e.g. a host retrying after an IntegrityError): forget the
    # signals sent inside it. A whole-transaction rollback is handled below.
    pending: dict[str, Pending] | None = session.info.get(PENDING_KEY)
    if not pending or not previous_transaction.nested:
        return
    for key, item in list(pending.items()):
        savepoint = item.savepoint
        while savepoint is not None and savepoint is not previous_transaction:
            savepoint = savepoint.parent
        if savepoint is not None:
            del pending[key]


def _forget(session: Session) -> None:
    session.info.pop(IDS_KEY, None)
    session.info.pop(PENDING_KEY, None)


def _receiver(action: str) -> Callable[..., None]:
    def receive(sender: Any, **kwargs: Any) -> None:
        app = sender if isinstance(sender, Flask) else current_app._get_current_object()  # type: ignore[attr-defined]
        # ``newsletter=True/False`` says the change was a newsletter opt-in / opt-out: an
        # opt-in may ask Mailchimp to e-mail a confirmation (see single_sync.perform).
        newsletter = kwargs.get("newsletter")
        add(
            state(app),
            subscriber=kwargs.get("subscriber"),
            email=kwargs.get("email"),
            previous_email=kwargs.get("previous_email"),
            action=action
            if newsletter is None
            else (OutboxAction.OPTIN if newsletter else OutboxAction.OPTOUT),
        )

    return receive


_on_signup = _receiver(OutboxAction.SIGNUP)
_on_change = _receiver(OutboxAction.CHANGE)

_SESSION_EVENTS: list[tuple[str, Callable[..., None]]] = [
    ("before_commit", _write_rows),
    ("after_commit", _enqueue_committed),
    ("after_soft_rollback", _forget_savepoint),
    ("after_rollback", _forget),
]


def listen() -> None:
    """Attach the signup signals' receivers and the session events (once per process).

    Called by ``init_app``. The session events are on SQLAlchemy's ``Session`` class, so
    they see the host's sessions whatever their factory; they do nothing in a session
    that noted no outbox row.
    """
    subscriber_signed_up.connect(_on_signup)
    subscriber_changed.connect(_on_change)
    for name, listener in _SESSION_EVENTS:
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def connect(
    signal: Signal, subscriber: Callable[..., Any], action: str = OutboxAction.SIGNUP
) -> Callable[..., None]:
    """Make an existing host signal feed the outbox.

    ``subscriber(sender, **kwargs)`` picks the subscriber out of the signal's arguments,
    e.g. ``lambda sender, **kw: kw["user"]`` for Flask-Security-Too's ``user_registered``.
    """

    def receive(sender: Any, **kwargs: Any) -> None:
        add(state(), subscriber=subscriber(sender, **kwargs), action=action)

    signal.connect(receive, weak=False)
    return receive
