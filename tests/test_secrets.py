"""No part of the Mailchimp API key leaves the app's config: not in Redis (key names,
values, job arguments), logs, admin pages, CLI output or error output, during a real
export and a real auto-sync with worker processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers_export import choose_audience, insert_customers
from redis import Redis
from support import ROOT, Workers, wait_for

from example_app.models import db
from flask_mcsync import state
from flask_mcsync.models import OutboxItem
from flask_mcsync.throttle import account_id

PREFIX = "/admin/mailchimp"


def key_parts(api_key: str, length: int = 6) -> set[str]:
    """Every run of ``length`` characters of the key's secret part (the datacenter is not)."""
    secret = api_key.rsplit("-", 1)[0]
    return {secret[i : i + length] for i in range(len(secret) - length + 1)}


def leaks(text: str | bytes, parts: set[str]) -> list[str]:
    blob = text.decode("latin-1") if isinstance(text, bytes) else text
    return sorted(p for p in parts if p in blob.lower())


def redis_dump(connection: Redis) -> bytes:
    """Every key name and value, with RQ's compressed job data (its arguments) unpacked."""
    out = []
    for key in connection.scan_iter(count=1000):
        out.append(key)
        kind = connection.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [connection.get(key) or b""]
        elif kind == b"hash":
            for field, value in connection.hgetall(key).items():
                values += [field, value]
                if field == b"data":
                    with contextlib.suppress(zlib.error):
                        values.append(zlib.decompress(value))
        elif kind == b"list":
            values = connection.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(connection.smembers(key))
        elif kind == b"zset":
            values = [m for m, _ in connection.zrange(key, 0, -1, withscores=True)]
        out += values
    return b"\n".join(out)


class RedisWatcher(threading.Thread):
    """Every command Redis is sent while the workers run, as MONITOR shows it (the
    scripts' own commands included). A slot key lives only mid-request: reading Redis
    every 20 ms, as this watcher once did, missed all of them in a CI run once requests
    got faster."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: list[bytes] = []
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        # No read timeout: redis-py 8 gives every connection a 5 s one by default, and
        # MONITOR may see nothing for that long on a busy machine (then the thread died).
        with Redis.from_url(self.url, socket_timeout=None).monitor() as monitor:
            self.ready.set()
            for event in monitor.listen():
                self.seen.append(str(event.get("command", "")).encode())
                if self.stop.is_set():
                    return

    def finish(self) -> None:
        self.stop.set()
        with Redis.from_url(self.url) as connection:
            connection.ping()  # one more command, so the loop sees the flag
        self.join(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_part_of_the_api_key_leaves_the_config(
    app: Flask,
    client: FlaskClient,
    workers: Workers,
    redis_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api_key = app.config["MCSYNC_API_KEY"]
    parts = key_parts(api_key)
    insert_customers(db, [{"email": f"buyer{i}@gmail.com", "newsletter": True} for i in range(40)])
    choose_audience(app)

    # Workers whose logs we keep (the fixture's go to /dev/null).
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    for log in logs:
        with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
            workers.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "example_app", "mcsync", "worker"],
                    env=workers.env,
                    cwd=ROOT,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    watcher = RedisWatcher(redis_url)
    watcher.start()
    assert watcher.ready.wait(10), "MONITOR did not start"
    try:
        export = app.test_cli_runner().invoke(
            args=["mcsync", "export", "--wait", "--batch-size", "5"]
        )
        assert export.exit_code == 0, export.output
        # Auto-sync: the first export is done, a signup goes out through the workers.
        response = client.post("/signup", data={"email": "late@gmail.com", "newsletter": "1"})
        assert response.status_code == 302

        def sent() -> bool:
            db.session.commit()
            rows = db.session.execute(sa.select(OutboxItem.status)).scalars().all()
            return rows == ["sent"]

        wait_for(sent, timeout=60, what="the auto-sync row to be sent")
    finally:
        watcher.finish()

    # The slot keys were seen, and named by the keyed hash, not by the key.
    redis_text = b"\n".join(watcher.seen) + redis_dump(Redis.from_url(redis_url))
    assert f"mcsync:slots:{account_id(api_key)}".encode() in redis_text
    assert leaks(redis_text, parts) == []

    pages = [
        client.get(PREFIX + path).get_data(as_text=True)
        for path in (
            "/",
            "/sync",
            "/sync/export.json",
            "/status",
            "/status/runs/1",
            "/status/runs/1.json",
            "/sync/runs/1.json",
            "/status/diagnostic?email=late@gmail.com",
        )
    ]
    assert leaks("\n".join(pages), parts) == []

    cli = app.test_cli_runner()
    outputs = [export.output] + [
        cli.invoke(args=["mcsync", *args]).output
        for args in (["settings"], ["settings", "--json"], ["status"], ["ping"], ["lists"])
    ]
    assert leaks("\n".join(outputs), parts) == []

    for proc in workers.procs:
        proc.terminate()
    for proc in workers.procs:
        proc.wait(timeout=20)
    worker_logs = "\n".join(log.read_text(errors="replace") for log in logs)
    assert "Job OK" in worker_logs or "Successfully completed" in worker_logs, worker_logs[-2000:]
    assert leaks(worker_logs + caplog.text, parts) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_refused_key_is_not_echoed_in_error_output(app: Flask, sandbox: Any) -> None:
    """Mailchimp's 401 for a well-formed but unknown key, in the CLI and on the page."""
    wrong = "0123456789abcdef0123456789abcdef-us21"
    app.extensions["mcsync"].config = state(app).config.__class__(
        **{**state(app).config.__dict__, "api_key": wrong}
    )
    ping = app.test_cli_runner().invoke(args=["mcsync", "ping"])
    assert ping.exit_code == 1 and "Mailchimp said" in ping.output, ping.output
    assert leaks(ping.output, key_parts(wrong)) == []


def test_the_account_id_is_one_way_and_shared_by_every_worker() -> None:
    key = "89abcdef0123456789abcdef01234567-us21"
    assert account_id(key) == account_id(key)
    assert account_id(key) != account_id("99abcdef0123456789abcdef01234567-us21")
    assert leaks(account_id(key), key_parts(key, 4)) == []
