"""Where the shop's addresses live: the host's model, read in primary-key order.

The host declares a :class:`SubscriberSource`; we read it page by page with keyset
pagination (``WHERE pk > :last ORDER BY pk LIMIT n``), never OFFSET (which rescans every
earlier row) and never the whole table in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .addresses import normalize

if TYPE_CHECKING:
    from .changes import MailchimpChange

FilterSpec = Callable[[], Any] | Any
MergeFieldSpec = str | Callable[[Any], Any]
ChangeHook = Callable[["MailchimpChange"], "str | None"]


# Not frozen: a frozen dataclass sets each field through object.__setattr__, a third of
# reading a row of the shop in an export. Nothing changes one once made.
@dataclass(slots=True)
class SourceRow:
    """One address as the shop holds it (merge values as the shop's columns hold them)."""

    pk: Any
    email: str
    merge_fields: dict[str, Any]
    language: str | None = None


@dataclass
class SubscriberSource:
    """The host's subscribers: a model, its e-mail column, which rows, which merge fields.

    :param model: a mapped class with a single-column primary key.
    :param email: the attribute holding the address.
    :param filter: which rows are subscribers (e.g. ``lambda: Customer.newsletter.is_(True)``,
        or the expression itself); ``None`` means every row. This is how non-subscribers
        stay out of the audience (and off the Mailchimp bill).
    :param merge_fields: Mailchimp merge tag → attribute name (read as a column, fast) or
        a callable taking the model instance (loads whole rows, slower).
    :param language: the subscriber's language (``"fr"``, ``"en"``...) as an attribute name
        or a callable taking the model instance; sent as the member's ``language`` on every
        path, so Mailchimp writes to French subscribers in French. ``None``: not sent.
    :param on_mailchimp_change: called with each :class:`~.changes.MailchimpChange` (an
        unsubscribe, a bounce, a profile or address change made in Mailchimp) inside the
        transaction that records it: change the shop's rows in the host's session, and
        return a short sentence saying what was done (shown in the sync history).
    """

    model: type
    email: str = "email"
    filter: FilterSpec | None = None
    merge_fields: Mapping[str, MergeFieldSpec] = field(default_factory=dict)
    language: MergeFieldSpec | None = None
    on_mailchimp_change: ChangeHook | None = None

    def __post_init__(self) -> None:
        mapper: Any = sa.inspect(self.model, raiseerr=False)
        if mapper is None:
            raise TypeError(
                f"SubscriberSource(model={self.model!r}): not a SQLAlchemy model; pass the"
                " mapped class that holds the shop's addresses."
            )
        if len(mapper.primary_key) != 1:
            raise TypeError(
                f"SubscriberSource: {self.model.__name__} must have a single-column primary"
                " key; it is read in primary-key order."
            )
        if not hasattr(self.model, self.email):
            raise TypeError(
                f"SubscriberSource: {self.model.__name__} has no attribute {self.email!r};"
                " set email= to the column that holds the address."
            )
        for tag, spec in self.merge_fields.items():
            if isinstance(spec, str) and not hasattr(self.model, spec):
                raise TypeError(
                    f"SubscriberSource: merge field {tag} maps to {spec!r}, which"
                    f" {self.model.__name__} does not have."
                )
        if isinstance(self.language, str) and not hasattr(self.model, self.language):
            raise TypeError(
                f"SubscriberSource: language maps to {self.language!r}, which"
                f" {self.model.__name__} does not have."
            )
        self._pk = mapper.primary_key[0]
        self._columns_only = all(
            isinstance(s, str) for s in (*self.merge_fields.values(), self.language or "")
        )

    @property
    def pk_column(self) -> Any:
        return self._pk

    @property
    def email_column(self) -> Any:
        return getattr(self.model, self.email)

    def where(self) -> Any:
        """The host's filter as a SQL expression (``true()`` when there is none)."""
        spec = self.filter
        if spec is None:
            return sa.true()
        return spec() if callable(spec) and not isinstance(spec, sa.ColumnElement) else spec

    def _select(self) -> sa.Select[Any]:
        if self._columns_only:
            columns = [getattr(self.model, str(s)) for s in self.merge_fields.values()]
            if self.language:
                columns.append(getattr(self.model, str(self.language)))
            return sa.select(self._pk, self.email_column, *columns)
        return sa.select(self._pk, self.email_column, self.model)

    def _row(self, row: Any) -> SourceRow:
        language: Any = None
        if self._columns_only:
            values = list(row[2:])
            if self.language:
                language = values.pop()
            merge = {
                tag: value
                for tag, value in zip(self.merge_fields, values, strict=True)
                if value is not None
            }
        else:
            instance = row[2]
            merge = {}
            for tag, spec in self.merge_fields.items():
                value = getattr(instance, spec) if isinstance(spec, str) else spec(instance)
                if value is not None:
                    merge[tag] = value
            if self.language is not None:
                spec = self.language
                language = getattr(instance, spec) if isinstance(spec, str) else spec(instance)
        # Raw Python values (bool, date, Decimal...): :mod:`merge_values` converts them
        # for the audience's field types before anything is sent.
        return SourceRow(
            pk=row[0],
            email=row[1] or "",
            merge_fields=merge,
            language=str(language).strip() or None if language is not None else None,
        )

    def pages(
        self, session: Session, after: Any = None, page_size: int = 2000, through: Any = None
    ) -> Iterator[list[SourceRow]]:
        """Subscriber rows in primary-key order, ``page_size`` at a time, after ``after``
        and up to ``through`` (``None``: to the end)."""
        last = after
        while True:
            query = self._select().where(self.where()).order_by(self._pk).limit(page_size)
            if last is not None:
                query = query.where(self._pk > last)
            if through is not None:
                query = query.where(self._pk <= through)
            rows = [self._row(r) for r in session.execute(query)]
            if not rows:
                return
            yield rows
            last = rows[-1].pk
            if len(rows) < page_size:
                return

    def with_subscriber_flag(self) -> sa.Select[Any]:
        """The source's select with a last column saying whether the row is a subscriber;
        read its rows with :meth:`row_of` (the flag column left out)."""
        return self._select().add_columns(self.where().label("mcsync_is_subscriber"))

    def row_of(self, row: Any) -> SourceRow:
        return self._row(row)

    def find(self, session: Session, email: str) -> list[tuple[SourceRow, bool]]:
        """Every row whose address is ``email`` in any case, with whether it is a subscriber.

        Used by the diagnostic tool and single syncs, so it reads few rows; a host with a
        large table should have an index on ``lower(email)`` (the example shop does), or
        this scans the table.
        """
        query = (
            self.with_subscriber_flag()
            .where(sa.func.lower(self.email_column) == normalize(email))
            .order_by(self._pk)
        )
        found = []
        for row in session.execute(query):
            found.append((self._row(row[:-1]), bool(row[-1])))
        return found

    def key_ranges(self, session: Session, rows: int) -> list[tuple[Any, Any]]:
        """Cut the subscribers into ranges of ``rows`` keys: ``(after, through)`` pairs,
        ``after`` exclusive, ``through`` inclusive, ``None`` for an open end.

        Each bound is one index range read past ``rows`` keys (OFFSET within a range, never
        from the start), so cutting a million rows reads each key once. The last range is
        open, like a planner reading to the end: rows added meanwhile are read too.
        """
        ranges: list[tuple[Any, Any]] = []
        last = None
        while True:
            query = (
                sa.select(self._pk).where(self.where()).order_by(self._pk).offset(rows - 1).limit(1)
            )
            if last is not None:
                query = query.where(self._pk > last)
            bound = session.execute(query).scalar()
            if bound is None:
                ranges.append((last, None))
                return ranges
            ranges.append((last, bound))
            last = bound

    def count(self, session: Session) -> int:
        query = sa.select(sa.func.count()).select_from(self.model).where(self.where())
        return int(session.execute(query).scalar_one())
