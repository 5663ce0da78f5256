"""Helpers for the end-to-end export tests: a shop with known addresses, what an export of
it must produce (computed here, independently of ``flask_mcsync.eligibility``), and
waiting on a run's rows.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import worker_env

ROOT = Path(__file__).resolve().parent.parent
LIST_ID = "a1b2c3d4e5"

# Deliberately simple and independent of flask_mcsync.addresses: the shops built here
# only hold addresses that are plainly valid or plainly broken.
_VALID = re.compile(r"^[a-z0-9+_-]+(\.[a-z0-9+_-]+)*@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")

# Excluded by the rules the tests add (see ``add_standard_rules``).
EXCLUDED_DOMAINS = ("mailinator.com",)
EXCLUDED_ADDRESSES = ("blocked.person@gmail.com",)


def independent_is_valid(email: str) -> bool:
    return bool(_VALID.match(email.strip().lower()))


def independent_is_excluded(email: str) -> bool:
    low = email.strip().lower()
    domain = low.rpartition("@")[2]
    if any(domain == d or domain.endswith("." + d) for d in EXCLUDED_DOMAINS):
        return True
    if low.startswith("test+"):
        return True
    return low in EXCLUDED_ADDRESSES


def add_standard_rules(session: Any) -> None:
    from flask_mcsync.exclusions import add_rule

    for domain in EXCLUDED_DOMAINS:
        add_rule(session, "domain", domain)
    add_rule(session, "pattern", "TEST+*@*")  # patterns are case-insensitive
    for address in EXCLUDED_ADDRESSES:
        add_rule(session, "address", address.upper())


@dataclass
class Expected:
    """What an export of the shop must do, worked out from the customer rows."""

    send: dict[str, str] = field(default_factory=dict)  # lower-cased -> as first typed
    merge: dict[str, dict[str, str]] = field(default_factory=dict)
    excluded: int = 0
    invalid: int = 0
    duplicates: int = 0


def expected_export(rows: Iterable[dict[str, Any]], rules: bool = True) -> Expected:
    """``rows`` in primary-key order (insertion order here); ``rules``: whether the
    standard exclusion rules were added."""
    out = Expected()
    for row in rows:
        if not row["newsletter"]:
            continue
        email = str(row["email"])
        if not independent_is_valid(email):
            out.invalid += 1
        elif rules and independent_is_excluded(email):
            out.excluded += 1
        elif email.strip().lower() in out.send:
            out.duplicates += 1
        else:
            low = email.strip().lower()
            out.send[low] = email.strip()
            merge = {}
            if row.get("first_name"):
                merge["FNAME"] = row["first_name"]
            if row.get("last_name"):
                merge["LNAME"] = row["last_name"]
            out.merge[low] = merge
    return out


def shop_rows(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``make_customers`` plus hand-made edge cases (case duplicates, exclusions)."""
    from example_app.commands import make_customers

    rows = make_customers(count, seed)
    extra = [
        ("Anne.Case@Gmail.com", True),
        ("anne.case@gmail.com", True),  # same contact, other case
        ("ANNE.CASE@GMAIL.COM", True),
        ("late.optin@free.fr", False),  # not a subscriber: never sent
        ("someone@mailinator.com", True),
        ("x@shop.mailinator.com", True),  # subdomain of an excluded domain
        ("y@notmailinator.com", True),  # lookalike: sent
        ("Test+promo@orange.fr", True),
        ("Blocked.Person@gmail.com", True),
        ("broken@@gmail.com", True),
        ("no-at-sign.gmail.com", True),
        ("dots..twice@gmail.com", True),
        ("   ", True),
    ]
    for email, newsletter in extra:
        rows.append(
            {"email": email, "first_name": "Edge", "last_name": "Case", "newsletter": newsletter}
        )
    return rows


def insert_customers(db: Any, rows: list[dict[str, Any]]) -> None:
    from example_app.models import Customer

    for start in range(0, len(rows), 2000):
        db.session.execute(sa.insert(Customer), rows[start : start + 2000])
    db.session.commit()


def choose_audience(app: Any, list_id: str = LIST_ID) -> None:
    from flask_mcsync import settings, state

    ext = state(app)
    settings.update(ext.db.session, ext.config, list_id=list_id)


def shop_db() -> Any:
    """The example shop's Flask-SQLAlchemy object (its customers, our tables)."""
    from example_app.models import db

    return db


def prepare_export(app: Any, rows: list[dict[str, Any]]) -> Expected:
    """A shop holding ``rows``, the audience chosen, and what an export must send."""
    insert_customers(shop_db(), rows)
    choose_audience(app)
    return expected_export(rows, rules=False)


def start_export_run(app: Any, batch_size: int) -> int:
    """Start a manual export as the admin pages do; its run id."""
    from flask_mcsync import state
    from flask_mcsync.runs import start_export

    return int(start_export(state(app), "test", batch_size=batch_size).run.id)


def assert_all_recorded(sandbox: Any, run_id: int, expected: Any, data: dict[str, Any]) -> None:
    """The run finished with no error, the audience holds exactly what it had to send,
    and each address has one outcome."""
    assert data["status"] == "finished", (data["message"], data["batches"])
    assert data["errors"] == 0, [b["last_error"] for b in data["batches"]]
    members, wanted = set(audience_members(sandbox)), set(expected.send)
    assert members == wanted, {
        "missing": sorted(wanted - members),
        "extra": sorted(members - wanted),
        "run": {k: data[k] for k in ("total", "created", "updated", "errors", "skipped")},
        "batches": [(b["seq"], b["status"], b["size"], b["created"]) for b in data["batches"]],
    }
    assert_one_outcome_each(shop_db().session, run_id, expected.send)


def read_progress(session: Any, run_id: int) -> dict[str, Any]:
    from flask_mcsync.runs import progress

    session.commit()
    session.expire_all()
    data = progress(session, run_id)
    session.commit()
    assert data is not None, f"run {run_id} vanished"
    return data


def wait_run_ended(session: Any, run_id: int, timeout: float = 60) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def ended() -> bool:
        last.update(read_progress(session, run_id))
        return bool(last["ended"])

    deadline = time.monotonic() + timeout
    while not ended():
        if time.monotonic() > deadline:
            batches = [
                (b["seq"], b["status"], b["attempts"], b["last_error"])
                for b in last.get("batches", [])
            ]
            pytest.fail(
                f"run {run_id} did not end in {timeout}s: status={last.get('status')}"
                f" done={last.get('done')}/{last.get('total')} batches={batches}"
            )
        time.sleep(0.2)
    return last


def sent_outcomes(session: Any, run_id: int) -> list[Any]:
    """The run's outcome rows for addresses that were sent (not the skipped ones)."""
    from flask_mcsync.models import Outcome

    session.commit()
    return list(
        session.execute(
            sa.select(Outcome).where(Outcome.run_id == run_id, Outcome.outcome != "skipped")
        ).scalars()
    )


def assert_one_outcome_each(session: Any, run_id: int, expected: Iterable[str]) -> list[Any]:
    """Every expected address has exactly one non-skipped outcome row in the run."""
    rows = sent_outcomes(session, run_id)
    per_address = Counter(r.email.strip().lower() for r in rows)
    twice = {e: n for e, n in per_address.items() if n > 1}
    assert not twice, f"addresses with several outcomes in run {run_id}: {twice}"
    wanted = set(expected)
    assert set(per_address) == wanted, (
        f"missing outcomes: {sorted(wanted - set(per_address))[:10]};"
        f" unexpected: {sorted(set(per_address) - wanted)[:10]}"
    )
    return rows


def audience_members(sandbox: Any, list_id: str = LIST_ID) -> dict[str, dict[str, Any]]:
    """The sandbox audience's members by lower-cased address; fails on a double."""
    members = sandbox.client.members(list_id)["members"]
    by_address: dict[str, dict[str, Any]] = {}
    for member in members:
        key = member["email_address"].lower()
        assert key not in by_address, f"{key} is in the audience twice"
        by_address[key] = member
    return by_address


def flask_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "example_app", "mcsync", *args]


def run_cli(app: Any, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``flask --app example_app mcsync *args`` in a process of its own (from the fork
    server, see forkserver.py), as ``subprocess.run(..., capture_output=True)``."""
    return run_clis(app, list(args), timeout=timeout)[0]


def run_clis(
    app: Any, *commands: list[str], timeout: float = 90
) -> list[subprocess.CompletedProcess[str]]:
    """Several ``flask mcsync`` commands started together, each in a process of its own,
    then each waited for (``timeout`` in all); a command still running then is killed."""
    from forkserver import FORK_SERVER

    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory() as folder:
        started = []
        for n, args in enumerate(commands):
            out, err = Path(folder, f"{n}.out"), Path(folder, f"{n}.err")
            proc = FORK_SERVER.spawn(
                ["--app", "example_app", "mcsync", *args], worker_env(app), stdout=out, stderr=err
            )
            started.append((args, proc, out, err))
        results = []
        try:
            for args, proc, out, err in started:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
                results.append(
                    subprocess.CompletedProcess(
                        flask_cli(*args), code, out.read_text(), err.read_text()
                    )
                )
        finally:
            for _, proc, _, _ in started:
                if proc.poll() is None:
                    proc.kill()
        return results
