"""The diagnostic tool at backend and CLI level: ``diagnostic.diagnose``,
``diagnostic.start_resync`` and ``flask mcsync diagnose EMAIL [--resync] [--json]``, on
SQLite and PostgreSQL, against the Mailchimp sandbox (and real workers for re-syncs).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import LIST_ID, choose_audience, insert_customers, wait_run_ended
from support import add_refused_autosync, wait_for

HOSTILE = "<script>alert('mcsync')</script>"


def _db() -> Any:
    from example_app.models import db

    return db


def _ext(app: Flask) -> Any:
    from flask_mcsync import state

    return state(app)


def _cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["mcsync", "diagnose", *args])


def _customer(
    email: str, first: str = "Ann", last: str = "Lee", newsletter: bool = True
) -> dict[str, Any]:
    return {"email": email, "first_name": first, "last_name": last, "newsletter": newsletter}


def _diagnose(app: Flask, email: str, live: bool = True) -> dict[str, Any]:
    from flask_mcsync.diagnostic import diagnose

    session = _db().session
    session.commit()
    session.expire_all()
    return diagnose(_ext(app), email, live=live)


def _wait_run(app: Flask, run_id: int) -> Any:
    from flask_mcsync.models import Run

    session = _db().session

    def ended() -> Any:
        session.commit()
        session.expire_all()
        run = session.get(Run, run_id)
        return run if run is not None and run.status in ("finished", "failed") else None

    return wait_for(ended, 30, f"re-sync run {run_id}")


def _puts(sandbox: Any) -> int:
    return int(sandbox.client.stats()["requests_by_method"].get("PUT", 0))


def _add_outcome(email: str, title: str, detail: str) -> None:
    session = _db().session
    add_refused_autosync(
        session, [email], title, detail, message=f"{title}: {detail}", list_id=LIST_ID
    )
    session.commit()


# --- with real workers -------------------------------------------------------------------


@pytest.mark.slow
def test_an_eligible_synced_address_shows_history_and_what_mailchimp_holds(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync.runs import start_export

    db = _db()
    insert_customers(
        db,
        [
            _customer("Anne.Synced@Gmail.com", "Anne", "Synced"),
            _customer("other.one@gmail.com", "Other", "One"),
        ],
    )
    choose_audience(app)
    workers.start(1)
    export_id = int(start_export(_ext(app), "test", batch_size=10).run.id)
    assert wait_run_ended(db.session, export_id, timeout=60)["status"] == "finished"

    # The CLI's re-sync waits for the worker and reports the run.
    result = _cli(app, "anne.synced@gmail.com", "--resync", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["resync"]["kind"] == "resync" and data["resync"]["status"] == "finished"
    # created or updated: a member created less than MCSYNC's clock-skew allowance (2 min)
    # ago cannot be told from a new one (see gateway.was_created).
    assert data["resync"]["created"] + data["resync"]["updated"] == 1
    assert data["resync"]["errors"] == 0

    assert data["valid"] and not data["excluded"] and data["excluded_by"] is None
    assert data["subscriber"] and data["eligible"]
    assert [(r["email"], r["subscriber"]) for r in data["in_shop"]] == [
        ("Anne.Synced@Gmail.com", True)
    ]
    assert data["in_shop"][0]["merge_fields"] == {"FNAME": "Anne", "LNAME": "Synced"}
    assert [h["run_kind"] for h in data["history"]] == ["resync", "export"]
    assert data["history"][0]["outcome"] in ("created", "updated")
    assert data["history"][1]["outcome"] == "created"
    assert data["history"][1]["run_id"] == export_id
    assert data["last_sent"] == data["history"][0]
    assert data["last_sent"]["sent"]["merge_fields"] == {"FNAME": "Anne", "LNAME": "Synced"}
    assert data["last_sent"]["mailchimp_status"] == "subscribed"
    assert data["last_error"] is None and data["mailchimp_error"] is None
    mc = data["mailchimp"]
    assert mc["in_audience"] and mc["status"] == "subscribed"
    assert mc["email_address"] == "Anne.Synced@Gmail.com"
    assert mc["merge_fields"] == {"FNAME": "Anne", "LNAME": "Synced"}
    assert mc["last_changed"]

    # Typed in another case with spaces around: the same answer.
    answer = _diagnose(app, "  ANNE.SYNCED@gmail.COM \t")
    assert answer["email"] == "ANNE.SYNCED@gmail.COM"
    assert answer["normalized"] == "anne.synced@gmail.com"
    same = dict(data, email=answer["email"])
    same.pop("resync")
    assert answer == same
    # The CLI's answer without --resync is the function's.
    plain = _cli(app, "Anne.Synced@Gmail.com", "--json")
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.output) == _diagnose(app, "Anne.Synced@Gmail.com")
    text = _cli(app, " ANNE.SYNCED@GMAIL.COM ")
    assert text.exit_code == 0, text.output
    assert "Mailchimp: subscribed" in text.output and "eligible for sync: yes" in text.output

    # In text, the re-sync ends with the address's outcome, not only "run N finished".
    resynced = _cli(app, "anne.synced@gmail.com", "--resync").output
    assert re.search(
        r"Re-sync \(run \d+\) finished: (created|updated) \(now subscribed in Mailchimp\)\.",
        resynced,
    ), resynced


@pytest.mark.slow
def test_excluded_and_invalid_addresses_resync_as_skipped_and_send_nothing(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync.diagnostic import start_resync
    from flask_mcsync.exclusions import add_rule

    db = _db()
    insert_customers(
        db,
        [
            _customer("Someone@Shop.Mailinator.com"),
            _customer("broken@@gmail.com"),
        ],
    )
    choose_audience(app)
    add_rule(db.session, "domain", "mailinator.com")

    excluded = _diagnose(app, "someone@shop.mailinator.com")
    assert excluded["excluded"] and excluded["excluded_by"] == "whole domain 'mailinator.com'"
    assert excluded["valid"] and excluded["subscriber"] and not excluded["eligible"]
    assert excluded["in_shop"][0]["email"] == "Someone@Shop.Mailinator.com"

    sandbox.client.reset_stats()
    invalid = _diagnose(app, "broken@@gmail.com")
    assert not invalid["valid"] and "exactly one '@'" in invalid["invalid_reason"]
    assert not invalid["eligible"] and invalid["subscriber"]
    # No live lookup for an address Mailchimp could not hold.
    assert invalid["mailchimp"] is None and invalid["mailchimp_error"] is None
    assert sandbox.client.stats()["requests_total"] == 0

    workers.start(1)
    sandbox.client.reset_stats()
    for email, reason in (
        ("SOMEONE@shop.mailinator.com ", "Excluded by the whole domain 'mailinator.com' rule."),
        ("broken@@gmail.com", "The address must contain exactly one '@'."),
    ):
        run = _wait_run(app, int(start_resync(_ext(app), email, started_by="test").id))
        assert (run.status, run.skipped, run.created, run.updated, run.errors) == (
            "finished",
            1,
            0,
            0,
            0,
        )
        assert run.message == reason
        after = _diagnose(app, email, live=False)
        assert after["history"][0]["outcome"] == "skipped"
        assert after["history"][0]["run_kind"] == "resync"
        assert after["history"][0]["detail"] == reason
        assert after["history"][0]["sent"] is None and after["last_sent"] is None
    assert _puts(sandbox) == 0
    assert sandbox.client.member(LIST_ID, "someone@shop.mailinator.com") is None


@pytest.mark.slow
def test_resync_of_an_unsubscribed_member_keeps_it_unsubscribed_and_updates_merge_fields(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync.diagnostic import start_resync

    db = _db()
    sandbox.client.seed_members(
        LIST_ID,
        [
            {
                "email_address": "una.sub@gmail.com",
                "status": "unsubscribed",
                "merge_fields": {"FNAME": "Old", "LNAME": "Name"},
            }
        ],
    )
    insert_customers(db, [_customer("Una.Sub@gmail.com", "Una", "Newname")])
    choose_audience(app)

    before = _diagnose(app, "una.sub@gmail.com")
    assert before["eligible"] and before["history"] == []
    assert before["mailchimp"]["status"] == "unsubscribed"
    assert before["mailchimp"]["merge_fields"] == {"FNAME": "Old", "LNAME": "Name"}

    workers.start(1)
    run = _wait_run(app, int(start_resync(_ext(app), " Una.Sub@gmail.com").id))
    assert (run.status, run.updated, run.created, run.errors) == ("finished", 1, 0, 0)

    member = sandbox.client.member(LIST_ID, "una.sub@gmail.com")
    assert member["status"] == "unsubscribed"
    assert member["merge_fields"] == {"FNAME": "Una", "LNAME": "Newname"}
    after = _diagnose(app, "UNA.SUB@GMAIL.COM")
    assert after["mailchimp"]["status"] == "unsubscribed"
    assert after["mailchimp"]["merge_fields"] == {"FNAME": "Una", "LNAME": "Newname"}
    last = after["history"][0]
    assert (last["outcome"], last["mailchimp_status"]) == ("updated", "unsubscribed")
    assert last["sent"]["status_if_new"] == "subscribed"
    assert "status" not in last["sent"]  # never a status for an existing member

    # The same through the CLI: still unsubscribed.
    result = _cli(app, "una.sub@gmail.com", "--resync", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["resync"]["status"] == "finished" and data["mailchimp"]["status"] == "unsubscribed"
    assert sandbox.client.member(LIST_ID, "una.sub@gmail.com")["status"] == "unsubscribed"


# --- without workers ---------------------------------------------------------------------


def test_an_address_unknown_to_the_shop(db_only_app: Flask, sandbox: Any) -> None:
    insert_customers(_db(), [_customer("opted.out@gmail.com", newsletter=False)])
    choose_audience(db_only_app)
    unknown = _diagnose(db_only_app, "nobody@gmail.com")
    assert unknown["in_shop"] == [] and not unknown["subscriber"] and not unknown["eligible"]
    assert unknown["valid"] and not unknown["excluded"]
    assert unknown["history"] == [] and unknown["waiting"] == []
    assert unknown["mailchimp"] == {"in_audience": False}
    result = _cli(db_only_app, "nobody@gmail.com")
    assert result.exit_code == 0, result.output
    assert "not in the shop's subscriber source" in result.output
    assert "Mailchimp: not in the audience" in result.output

    opted_out = _diagnose(db_only_app, "Opted.Out@gmail.com")
    assert [r["subscriber"] for r in opted_out["in_shop"]] == [False]
    assert not opted_out["subscriber"] and not opted_out["eligible"]
    assert "not a subscriber" in _cli(db_only_app, "opted.out@gmail.com").output


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"error_rates": {"503": 1.0}}, "Service Unavailable"),
        ({"next": [{"status": "timeout", "count": 5}]}, "Timeout"),
    ],
)
def test_mailchimp_failing_still_gives_the_rest_of_the_answer(
    db_only_app: Flask, sandbox: Any, fault: dict[str, Any], words: str
) -> None:
    insert_customers(_db(), [_customer("kept@gmail.com")])
    choose_audience(db_only_app)
    _add_outcome(
        "kept@gmail.com", "Member In Compliance State", "kept@gmail.com is in a compliance state."
    )
    sandbox.client.set_faults(**fault)
    answer = _diagnose(db_only_app, "kept@gmail.com")
    assert answer["mailchimp"] is None
    assert answer["mailchimp_error"].startswith("Could not ask Mailchimp: ")
    assert words in answer["mailchimp_error"]
    assert answer["eligible"] and answer["in_shop"][0]["email"] == "kept@gmail.com"
    assert answer["last_error"]["title"] == "Member In Compliance State"
    result = _cli(db_only_app, "kept@gmail.com", "--json")
    assert result.exit_code == 0, result.output
    assert words in json.loads(result.output)["mailchimp_error"]


def test_mailchimp_unreachable_at_a_wrong_url(db_only_app: Flask, sandbox: Any) -> None:
    from example_app import create_app
    from flask_mcsync import state
    from flask_mcsync.diagnostic import diagnose

    insert_customers(_db(), [_customer("kept@gmail.com")])
    choose_audience(db_only_app)
    config = dict(db_only_app.config, MCSYNC_API_URL="http://127.0.0.1:9/3.0/")
    other = create_app({k: v for k, v in config.items() if k.isupper()})
    with other.app_context():
        try:
            answer = diagnose(state(other), "kept@gmail.com")
            text = other.test_cli_runner().invoke(args=["mcsync", "diagnose", "kept@gmail.com"])
        finally:
            _db().session.remove()
            _db().engine.dispose()  # the second app's own pool
    assert answer["mailchimp"] is None
    assert "Connection failed" in answer["mailchimp_error"]
    assert answer["in_shop"][0]["email"] == "kept@gmail.com" and answer["eligible"]
    assert text.exit_code == 0, text.output
    assert "Mailchimp: Could not ask Mailchimp: Connection failed" in text.output


def test_no_audience_chosen_is_said_and_a_resync_refused(db_only_app: Flask, sandbox: Any) -> None:
    from flask_mcsync.config import ConfigError
    from flask_mcsync.diagnostic import start_resync
    from flask_mcsync.models import Run

    insert_customers(_db(), [_customer("kept@gmail.com")])
    answer = _diagnose(db_only_app, "kept@gmail.com")
    assert answer["mailchimp_error"].startswith("No audience is chosen: pick one in the General")
    assert "'flask mcsync settings --list ID'" in answer["mailchimp_error"]
    assert answer["eligible"]
    with pytest.raises(ConfigError, match="No audience is chosen"):
        start_resync(_ext(db_only_app), "kept@gmail.com")
    assert _db().session.execute(sa.select(sa.func.count()).select_from(Run)).scalar_one() == 0


def test_resync_without_a_queue_fails_with_a_sentence_not_a_stuck_run(
    db_only_app: Flask, sandbox: Any
) -> None:
    from flask_mcsync.models import Run

    insert_customers(_db(), [_customer("kept@gmail.com")])
    choose_audience(db_only_app)
    result = _cli(db_only_app, "kept@gmail.com", "--resync")
    assert result.exit_code == 1
    assert "Could not queue the re-sync" in result.output and "Traceback" not in result.output
    session = _db().session
    session.expire_all()
    runs = session.execute(sa.select(Run)).scalars().all()
    assert [(r.kind, r.status) for r in runs] == [("resync", "failed")]
    # Asked from a French page: the page is told in French, the run's message is stored
    # in English like every other (the CLI and the CSV show it as written).
    from flask_mcsync import i18n, messages
    from flask_mcsync.config import ConfigError
    from flask_mcsync.diagnostic import start_resync

    with i18n.use_locale("fr"), pytest.raises(ConfigError, match="Impossible de mettre"):
        start_resync(_ext(db_only_app), "kept@gmail.com")
    session.expire_all()
    stored = session.execute(sa.select(Run.message).order_by(Run.id.desc())).scalars().first()
    assert stored is not None and stored.startswith("Could not queue the re-sync (")
    with i18n.use_locale("fr"):
        assert messages.translate(stored).startswith("Impossible de mettre la re-synchro")


def test_hostile_texts_are_kept_verbatim_in_json_and_cli(db_only_app: Flask, sandbox: Any) -> None:
    insert_customers(_db(), [_customer("victim@gmail.com", first=HOSTILE)])
    choose_audience(db_only_app)
    _add_outcome("victim@gmail.com", HOSTILE, f'Mailchimp said {HOSTILE} & "more"')

    answer = _diagnose(db_only_app, "victim@gmail.com")
    assert answer["last_error"]["title"] == HOSTILE
    assert answer["last_error"]["detail"] == f'Mailchimp said {HOSTILE} & "more"'
    assert answer["in_shop"][0]["merge_fields"]["FNAME"] == HOSTILE
    data = json.loads(_cli(db_only_app, "victim@gmail.com", "--json").output)
    assert data["last_error"]["title"] == HOSTILE
    assert data["in_shop"][0]["merge_fields"]["FNAME"] == HOSTILE
    text = _cli(db_only_app, "victim@gmail.com").output
    assert f"{HOSTILE}: Mailchimp said {HOSTILE}" in text

    typed = f"{HOSTILE}@evil.com"
    hostile = json.loads(_cli(db_only_app, typed, "--json").output)
    assert hostile["email"] == typed and hostile["normalized"] == typed.lower()
    assert not hostile["valid"] and hostile["mailchimp"] is None
    assert f"Address: {typed} " in _cli(db_only_app, typed).output


def test_a_resync_that_ends_while_the_page_is_built_is_shown_with_its_history(
    app: Flask, client: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page must never say "Updated" above a history without that update: a run
    that ended after the page read the history but before it read the run left the page
    so, and, its run ended, the page never reloaded (seen in a browser test on a loaded
    machine). Here the worker's commit lands in the middle of building the page."""
    from flask_mcsync.addresses import subscriber_hash
    from flask_mcsync.admin import diagnostic_views
    from flask_mcsync.models import Outcome, Run

    db = _db()
    insert_customers(db, [_customer("Late.Finish@gmail.com", "Late", "Finish")])
    choose_audience(app)
    run = Run(kind="resync", list_id=LIST_ID, started_by="test", total=1, status="running")
    db.session.add(run)
    db.session.commit()
    run_id = run.id

    real_diagnose = diagnostic_views.diagnose

    def worker_commits_meanwhile(*args: Any, **kwargs: Any) -> Any:
        answer = real_diagnose(*args, **kwargs)
        # What the worker commits in one transaction: the outcome and the run's end.
        db.session.add(
            Outcome(
                run_id=run_id,
                email="late.finish@gmail.com",
                email_hash=subscriber_hash("late.finish@gmail.com"),
                outcome="updated",
            )
        )
        db.session.execute(sa.update(Run).where(Run.id == run_id).values(status="finished"))
        db.session.commit()
        return answer

    monkeypatch.setattr(diagnostic_views, "diagnose", worker_commits_meanwhile)
    url = f"/admin/mailchimp/status/diagnostic?email=late.finish@gmail.com&run={run_id}"
    page = client.get(url).get_data(as_text=True)
    # Read before the commit: the run is still running, and the page follows it.
    assert 'id="resync-outcome"' not in page
    assert "data-poll-url=" in page

    monkeypatch.setattr(diagnostic_views, "diagnose", real_diagnose)
    page = client.get(url).get_data(as_text=True)  # the reload status.js makes
    assert 'id="resync-outcome" data-outcome="updated"' in page
    assert 'id="history-table"' in page and 'data-outcome="updated"' in page
