"""Both ways, small pieces: the config keys, Mailchimp's callbacks read into changes,
and the schema migration that brings an existing database to the both-ways tables."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from flask_mcsync.changes import InvalidPayload, Kind, from_webhook
from flask_mcsync.config import ConfigError, read_config


def test_public_url_is_optional_and_loses_its_trailing_slash() -> None:
    assert read_config({}).public_url is None
    assert read_config({"MCSYNC_PUBLIC_URL": "https://shop.example.com/"}).public_url == (
        "https://shop.example.com"
    )


@pytest.mark.parametrize("url", ["shop.example.com", "ftp://shop", "https://", "https://x/?a=1"])
def test_a_public_url_that_mailchimp_could_not_call_is_refused_at_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match=r"MCSYNC_PUBLIC_URL.*reconcile"):
        read_config({"MCSYNC_PUBLIC_URL": url})


def test_reconcile_interval_is_off_by_default_and_never_negative() -> None:
    assert read_config({}).reconcile_interval == 0
    assert read_config({"MCSYNC_RECONCILE_INTERVAL": "3600"}).reconcile_interval == 3600
    with pytest.raises(ConfigError, match="MCSYNC_RECONCILE_INTERVAL"):
        read_config({"MCSYNC_RECONCILE_INTERVAL": -1})
    with pytest.raises(ConfigError, match="MCSYNC_RECONCILE_INTERVAL"):
        read_config({"MCSYNC_RECONCILE_INTERVAL": "hourly"})


def test_webhook_path_must_be_a_path() -> None:
    assert read_config({"MCSYNC_WEBHOOK_PATH": "/hooks/mc/"}).webhook_path == "/hooks/mc"
    with pytest.raises(ConfigError, match="MCSYNC_WEBHOOK_PATH"):
        read_config({"MCSYNC_WEBHOOK_PATH": "hooks"})


def test_an_admin_delete_is_an_archive_and_merges_are_read() -> None:
    change = from_webhook(
        {
            "type": "unsubscribe",
            "fired_at": "2026-11-20 10:00:00",
            "data[email]": "ada@example.org",
            "data[action]": "delete",
            "data[reason]": "manual",
            "data[merges][FNAME]": "Ada",
            "data[merges][ADDR][city]": "London",  # nested: not a plain merge value
        }
    )
    assert change.kind is Kind.UNSUBSCRIBE
    assert (change.status, change.reason) == ("archived", "delete")
    assert change.merge_fields == {"FNAME": "Ada"}
    assert change.changed_at == datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    assert change.newsletter_off


def test_a_profile_event_keeps_the_status_unknown() -> None:
    change = from_webhook(
        {"type": "profile", "fired_at": "2026-11-20 10:00:00", "data[email]": "a@b.org"}
    )
    assert change.status is None and not change.newsletter_off


def test_too_many_fields_is_a_malformed_payload() -> None:
    form = {f"data[merges][F{i}]": "x" for i in range(200)}
    form.update({"type": "profile", "fired_at": "2026-11-20 10:00:00", "data[email]": "a@b.org"})
    with pytest.raises(InvalidPayload, match="more than"):
        from_webhook(form)


def test_a_database_of_schema_3_is_upgraded_keeping_its_settings(tmp_path: Any) -> None:
    from flask_mcsync.migrations import HEAD, upgrade
    from flask_mcsync.models import AudienceMember, SchemaVersion, WebhookEvent, metadata

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    new_tables = {WebhookEvent.__tablename__, AudienceMember.__tablename__}
    with engine.begin() as conn:
        metadata.create_all(
            conn, tables=[t for name, t in metadata.tables.items() if name not in new_tables]
        )
        conn.exec_driver_sql("ALTER TABLE mcsync_settings DROP COLUMN webhook_secret")
        conn.exec_driver_sql("ALTER TABLE mcsync_settings DROP COLUMN webhook_id")
        conn.execute(
            sa.insert(SchemaVersion),
            [
                {"version": 1, "description": "initial"},
                {"version": 2, "description": "batches"},
                {"version": 3, "description": "runs"},
            ],
        )
        conn.exec_driver_sql(
            "INSERT INTO mcsync_settings (id, list_id, double_optin, batch_size, auto_sync,"
            " updated_at) VALUES (1, 'a1b2c3d4e5', 0, 250, 1, '2026-01-01 00:00:00')"
        )

    assert upgrade(engine) == [
        "applied migration 4: both ways: webhook events, audience members, webhook settings",
        "applied migration 5: runs: batch counters for the progress window",
        "applied migration 6: planning in chunks: key ranges and planned addresses",
    ]
    inspector = sa.inspect(engine)
    assert new_tables <= set(inspector.get_table_names())
    columns = {c["name"] for c in inspector.get_columns("mcsync_settings")}
    assert {"webhook_secret", "webhook_id"} <= columns
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT list_id, batch_size FROM mcsync_settings").one() == (
            "a1b2c3d4e5",
            250,
        )
        assert conn.execute(sa.select(sa.func.max(SchemaVersion.version))).scalar() == HEAD
    assert upgrade(engine) == []  # again: nothing to do
    engine.dispose()
