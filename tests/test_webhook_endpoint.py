"""Mailchimp's webhook into the example shop: Mailchimp's exact form-encoded callbacks
(MAILCHIMP.md) posted with the Flask test client, on SQLite and PostgreSQL, with real
Redis. Events are applied here by ``webhook_events.apply_due`` (what the sweep does); the end
to end tests with workers and the sandbox firing the events live in test_twoway_e2e.py.

What must hold shows in the shop's customer rows, the event rows, the "From Mailchimp"
runs and the outbox (which must stay empty: no echo).
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import LIST_ID
from helpers_twoway import activate, customers, db, ext, outbox_count

HOSTILE = "<script>alert('mc')</script>"


def _customer(email: str, newsletter: bool = True, first: str = "Ada") -> None:
    from example_app.models import Customer

    session = db().session
    session.add(
        Customer(email=email, first_name=first, last_name="Lovelace", newsletter=newsletter)
    )
    session.commit()


def payload(kind: str, email: str, fired_at: str, **extra: str) -> dict[str, str]:
    """A callback as Mailchimp sends it (form fields, before encoding)."""
    data = {
        "type": kind,
        "fired_at": fired_at,
        "data[id]": "8a25ff1d98",
        "data[list_id]": LIST_ID,
        "data[email]": email,
        "data[email_type]": "html",
        "data[merges][EMAIL]": email,
        "data[merges][FNAME]": "Ada",
        "data[merges][LNAME]": "Lovelace",
        "data[merges][INTERESTS]": "Group1,Group2",
        "data[ip_opt]": "10.20.10.30",
        "data[web_id]": "3375995",
    }
    if kind == "unsubscribe":
        data.update({"data[action]": "unsub", "data[reason]": "manual", "data[campaign_id]": "cb3"})
    if kind == "cleaned":
        data = {
            "type": "cleaned",
            "fired_at": fired_at,
            "data[list_id]": LIST_ID,
            "data[campaign_id]": "4fjk2ma9xd",
            "data[reason]": "hard",
            "data[email]": email,
        }
    if kind == "upemail":
        data = {
            "type": "upemail",
            "fired_at": fired_at,
            "data[list_id]": LIST_ID,
            "data[new_id]": "51aa6d9d5d",
            "data[new_email]": extra.pop("new_email"),
            "data[old_email]": email,
        }
    data.update(extra)
    return data


def _post(app: Flask, secret: str, data: dict[str, str]) -> Any:
    return app.test_client().post(f"/mcsync/webhook/{secret}", data=data)


def _apply(app: Flask) -> dict[str, int]:
    from flask_mcsync.webhook_events import apply_due

    counts: dict[str, int] = apply_due(ext(app))
    return counts


def _events() -> list[Any]:
    from flask_mcsync.models import WebhookEvent

    session = db().session
    session.commit()
    rows = session.execute(
        sa.select(WebhookEvent.type, WebhookEvent.status, WebhookEvent.message).order_by(
            WebhookEvent.id
        )
    ).all()
    session.commit()
    return list(rows)


def _runs_from_mailchimp() -> list[Any]:
    from flask_mcsync.models import Outcome, Run

    session = db().session
    session.commit()
    rows = session.execute(
        sa.select(Run.kind, Run.started_by, Outcome.email, Outcome.outcome, Outcome.sent)
        .join(Outcome, Outcome.run_id == Run.id)
        .where(Run.kind == "mailchimp")
        .order_by(Outcome.id)
    ).all()
    session.commit()
    return list(rows)


# --- the change reaches the shop, through the host -----------------------------------------


def test_an_unsubscribe_clears_the_flag_through_the_host_and_is_recorded(app: Flask) -> None:
    from flask_mcsync.signals import mailchimp_changed

    secret = activate(app)
    _customer("ada@example.org")
    heard: list[dict[str, Any]] = []

    def listen(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    with mailchimp_changed.connected_to(listen):
        response = _post(
            app, secret, payload("unsubscribe", "Ada@Example.org", "2026-11-20 10:00:00")
        )
        assert response.status_code == 200
        assert customers() == {"ada@example.org": True}  # recorded, not applied yet
        assert _apply(app) == {"applied": 1}

    assert customers() == {"ada@example.org": False}
    assert [(h["email"], h["status"], h["reason"], h["new_email"]) for h in heard] == [
        ("Ada@Example.org", "unsubscribed", "manual", None)
    ]
    assert heard[0]["merge_fields"]["FNAME"] == "Ada"
    [run] = _runs_from_mailchimp()
    assert (run.started_by, run.outcome) == ("webhook: unsubscribe", "updated")
    assert run.sent["shop"] == "1 customer: newsletter flag cleared."
    assert [e.status for e in _events()] == ["applied"]
    # The shop's change was made while auto-sync was muted: nothing goes back out.
    assert outbox_count() == 0
    # The diagnostic history shows it; it is not something we sent.
    from flask_mcsync.diagnostic import diagnose

    answer = diagnose(ext(app), "ada@example.org", live=False)
    assert [(h["run_kind"], h["mailchimp_status"]) for h in answer["history"]] == [
        ("mailchimp", "unsubscribed")
    ]
    assert answer["last_sent"] is None


def test_cleaned_clears_the_flag_and_upemail_moves_the_address(app: Flask) -> None:
    secret = activate(app)
    _customer("bounce@example.org")
    _customer("old@example.org")

    assert (
        _post(
            app, secret, payload("cleaned", "bounce@example.org", "2026-11-20 10:00:00")
        ).status_code
        == 200
    )
    upemail = payload(
        "upemail", "old@example.org", "2026-11-20 10:00:01", new_email="new@example.org"
    )
    assert _post(app, secret, upemail).status_code == 200
    assert _apply(app) == {"applied": 2}

    assert customers() == {"bounce@example.org": False, "new@example.org": True}
    assert outbox_count() == 0


def test_a_subscribe_from_mailchimp_sets_the_flag_and_does_not_echo(app: Flask) -> None:
    secret = activate(app)
    _customer("late@example.org", newsletter=False)
    _post(app, secret, payload("subscribe", "late@example.org", "2026-11-20 10:00:00"))
    _apply(app)
    assert customers() == {"late@example.org": True}
    assert outbox_count() == 0


# --- guard, replay, order -------------------------------------------------------------------


def test_a_wrong_or_missing_secret_is_refused_and_records_nothing(app: Flask) -> None:
    secret = activate(app)
    _customer("ada@example.org")
    client = app.test_client()
    data = payload("unsubscribe", "ada@example.org", "2026-11-20 10:00:00")

    assert client.post("/mcsync/webhook/wrong-secret", data=data).status_code == 403
    assert client.post(f"/mcsync/webhook/{secret[:-1]}", data=data).status_code == 403
    assert client.get("/mcsync/webhook/nope").status_code == 403
    assert _events() == []
    assert customers() == {"ada@example.org": True}
    # Mailchimp's check of the URL, with the right secret.
    assert client.get(f"/mcsync/webhook/{secret}").status_code == 200


def test_no_secret_yet_means_every_call_is_refused(app: Flask) -> None:
    response = app.test_client().post("/mcsync/webhook/anything", data={"type": "subscribe"})
    assert response.status_code == 403
    assert _events() == []


def test_a_replay_changes_nothing(app: Flask) -> None:
    secret = activate(app)
    _customer("ada@example.org")
    data = payload("unsubscribe", "ada@example.org", "2026-11-20 10:00:00")

    assert _post(app, secret, data).status_code == 200
    _apply(app)
    assert _post(app, secret, data).status_code == 200  # Mailchimp retries: still 200
    assert _apply(app) == {}
    assert len(_events()) == 1
    assert len(_runs_from_mailchimp()) == 1


def test_an_older_event_never_overrides_a_newer_state(app: Flask) -> None:
    secret = activate(app)
    _customer("ada@example.org", newsletter=True)
    # The unsubscribe (newer) arrives first, the subscribe fired before it arrives late.
    _post(app, secret, payload("unsubscribe", "ada@example.org", "2026-11-20 10:00:05"))
    _apply(app)
    _post(app, secret, payload("subscribe", "ada@example.org", "2026-11-20 10:00:01"))
    assert _apply(app) == {"stale": 1}

    assert customers() == {"ada@example.org": False}
    kinds = [(r.outcome, r.sent["from_mailchimp"]) for r in _runs_from_mailchimp()]
    assert kinds == [("updated", "unsubscribe"), ("skipped", "subscribe")]


def test_events_waiting_together_are_applied_in_the_order_they_were_fired(app: Flask) -> None:
    secret = activate(app)
    _customer("ada@example.org", newsletter=True)
    # Received in the wrong order, both still waiting (Redis down, say): the sweep
    # applies the older first, so the newer state wins.
    _post(app, secret, payload("subscribe", "ada@example.org", "2026-11-20 10:00:09"))
    _post(app, secret, payload("unsubscribe", "ada@example.org", "2026-11-20 10:00:02"))
    assert _apply(app) == {"applied": 2}
    assert customers() == {"ada@example.org": True}


# --- hostile payloads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "broken, reason",
    [
        ({"type": "unsubscribe"}, "fired_at is missing"),
        ({"fired_at": "2026-11-20 10:00:00", "data[email]": "ada@example.org"}, "type"),
        ({"type": "drop tables", "fired_at": "2026-11-20 10:00:00"}, "not one of"),
        ({"type": "unsubscribe", "fired_at": "yesterday", "data[email]": "a@b.org"}, "fired_at"),
        ({"type": "unsubscribe", "fired_at": "2026-11-20 10:00:00"}, "data[email] is missing"),
        (
            {
                "type": "upemail",
                "fired_at": "2026-11-20 10:00:00",
                "data[old_email]": "ada@example.org",
            },
            "data[new_email]",
        ),
        (
            {"type": "profile", "fired_at": "2026-11-20 10:00:00", "data[email]": HOSTILE},
            "data[email]",
        ),
        (
            {
                "type": "profile",
                "fired_at": "2026-11-20 10:00:00",
                "data[email]": "ada@example.org",
                "data[merges][FNAME]": "x" * 5000,
            },
            "longer than",
        ),
        # An address change rewrites the customer's row: only a real address may.
        (
            {
                "type": "upemail",
                "fired_at": "2026-11-20 10:00:00",
                "data[old_email]": "ada@example.org",
                "data[new_email]": "ada\x00evil@example.org",
            },
            "NUL character",
        ),
        (
            {
                "type": "upemail",
                "fired_at": "2026-11-20 10:00:00",
                "data[old_email]": "ada@example.org",
                "data[new_email]": "x@y",
            },
            "data[new_email] is not an e-mail address: The domain has no dot",
        ),
        (
            {
                "type": "upemail",
                "fired_at": "2026-11-20 10:00:00",
                "data[old_email]": "ada@example.org",
                "data[new_email]": "two..dots@example.org",
            },
            "data[new_email] is not an e-mail address",
        ),
        ({"type": "\x00", "fired_at": "2026-11-20 10:00:00"}, "NUL character"),
        (
            {
                "type": "unsubscribe",
                "fired_at": "2026-11-20 10:00:00",
                "data[email]": "ada@example.org",
                "data[merges][FNAME]": "A\x00da",
            },
            "NUL character",
        ),
    ],
)
def test_malformed_payloads_get_a_400_are_recorded_and_change_nothing(
    app: Flask, broken: dict[str, str], reason: str
) -> None:
    secret = activate(app)
    _customer("ada@example.org")
    response = _post(app, secret, broken)
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    [event] = _events()
    assert event.status == "invalid" and reason in event.message
    assert _apply(app) == {}
    assert customers() == {"ada@example.org": True}
    assert _runs_from_mailchimp() == []


def test_a_huge_body_is_refused_without_reading_it_all(app: Flask) -> None:
    secret = activate(app)
    data = payload("profile", "ada@example.org", "2026-11-20 10:00:00")
    data.update({f"data[merges][F{i}]": "y" * 900 for i in range(100)})
    response = _post(app, secret, data)
    assert response.status_code == 413
    assert [e.status for e in _events()] == ["invalid"]


def test_html_in_merge_fields_is_kept_as_text_and_escaped_on_the_pages(
    app: Flask, client: Any
) -> None:
    secret = activate(app)
    _customer("ada@example.org")
    data = payload("profile", "ada@example.org", "2026-11-20 10:00:00")
    data["data[merges][FNAME]"] = HOSTILE
    assert _post(app, secret, data).status_code == 200
    assert _apply(app) == {"applied": 1}
    [run] = _runs_from_mailchimp()
    assert run.sent["merge_fields"]["FNAME"] == HOSTILE
    page = client.get("/admin/mailchimp/status/diagnostic?email=ada@example.org").get_data(
        as_text=True
    )
    assert HOSTILE not in page
    assert "From Mailchimp" in page


# --- Redis down ------------------------------------------------------------------------------


def test_with_redis_down_the_event_is_recorded_and_applied_by_the_sweep(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_mcsync import handoff

    secret = activate(app)
    _customer("ada@example.org")
    mc = ext(app)
    # The hand-off's Redis breaker is per app (handoff.breaker_for): start with none tripped.
    monkeypatch.setattr(handoff, "_breakers", handoff.weakref.WeakKeyDictionary())
    # A Redis nobody listens on: the hand-off fails, Mailchimp still gets its 200.
    from redis import Redis

    monkeypatch.setattr(
        mc, "_redis", Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    )
    response = _post(app, secret, payload("unsubscribe", "ada@example.org", "2026-11-20 10:00:00"))
    assert response.status_code == 200
    assert [e.status for e in _events()] == ["received"]
    from flask_mcsync.enqueue import make_queue
    from flask_mcsync.webhook_events import due_events, hand_off

    # The hand-off thread tried (and failed) off the request; then Redis is back.
    assert handoff.handoff_for(mc, hand_off).wait_idle(5)
    monkeypatch.setattr(handoff, "_breakers", handoff.weakref.WeakKeyDictionary())
    monkeypatch.setattr(mc, "_redis", None)
    # Redis is back: the sweep hands the waiting event to the workers' queue.

    assert hand_off(mc, due_events(mc.session, idle_seconds=0)) == 1
    assert len(make_queue(mc)) == 1
    assert _apply(app) == {"applied": 1}
    assert customers() == {"ada@example.org": False}
