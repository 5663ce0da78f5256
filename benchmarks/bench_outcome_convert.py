"""What a batch's 1,000 outcome rows cost in Python before they reach the database
(issue 10, target 1).

A batch's poll makes an :class:`~flask_mcsync.outcomes.AddressOutcome` per address and
:func:`~flask_mcsync.outcomes.record` turns them into what the driver takes: one block
of COPY text on PostgreSQL (psycopg), a list of tuples for ``executemany`` elsewhere.
This times both, with a stand-in for the database connection that takes what it is
given and does nothing, so only our Python is measured. CPU per batch of 1,000
(``time.process_time``), the best of ``--repeat`` batches.

    python benchmarks/bench_outcome_convert.py [--repeat 40]

To compare two versions of the code, run it from each checkout, one after the other.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from common import ROOT, load_average
from sqlalchemy.dialects import postgresql, sqlite

from flask_mcsync.addresses import subscriber_hash
from flask_mcsync.outcomes import AddressOutcome, Result, record

EMAILS = [f"user{i}.name@gmail.com" for i in range(1000)]
HASHES = [subscriber_hash(email) for email in EMAILS]


def outcomes() -> list[AddressOutcome]:
    """A batch's outcomes as a poll makes them: created, each with what was sent."""
    return [
        AddressOutcome(
            email,
            Result.CREATED,
            mailchimp_status="subscribed",
            sent={
                "merge_fields": {"FNAME": "Léa", "LNAME": "Dubois"},
                "status_if_new": "subscribed",
                "language": "fr",
            },
            email_hash=email_hash,
        )
        for email, email_hash in zip(EMAILS, HASHES, strict=True)
    ]


class _Copy:
    """psycopg's ``cursor.copy()`` block, taking the text and dropping it."""

    def __enter__(self) -> _Copy:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, text: str) -> None:
        assert text.count("\n") == len(EMAILS)

    def copy(self, statement: str) -> _Copy:
        return self

    def cursor(self) -> _Copy:
        return self


class _Connection:
    """What ``record`` asks of the session's connection, doing nothing with it."""

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect
        self.connection = self  # the pool's DBAPI connection ...
        self.driver_connection = _Copy()  # ... and psycopg's own

    def exec_driver_sql(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        assert len(rows) == len(EMAILS)


class _Session:
    def __init__(self, dialect: Any) -> None:
        self._connection = _Connection(dialect)

    def connection(self) -> _Connection:
        return self._connection


def best_ms(step: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    made = outcomes()
    dialects = {
        "PostgreSQL (psycopg), COPY text": postgresql.psycopg.dialect(),
        "SQLite, executemany tuples": sqlite.pysqlite.dialect(),
    }
    print(f"code at {ROOT}; CPU ms per batch of 1,000, best of {args.repeat}")
    print("| step | ms |")
    print("|---|---:|")
    print(f"| making the outcomes | {best_ms(outcomes, args.repeat):.2f} |")
    for name, dialect in dialects.items():
        session: Any = _Session(dialect)
        ms = best_ms(lambda s=session: record(s, 1, made, 2, bump=False), args.repeat)
        print(f"| record: rows and their conversion, {name} | {ms:.2f} |")
    print(f"load average: {load_average()}")


if __name__ == "__main__":
    main()
