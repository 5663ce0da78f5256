"""Following an export run on a terminal: a progress bar until it ends, then a summary.

``flask mcsync export`` and the demo (``example_app/demo.py``) both show a run this way.
"""

from __future__ import annotations

import time
from typing import Any

from .app_state import McSync
from .runs import progress
from .terminal import ProgressLine, count, inert, say


def follow(ext: McSync, run_id: int, quiet: bool = False, interval: float = 0.5) -> dict[str, Any]:
    """Print a progress bar until the run ends; return its final progress."""
    session = ext.session
    last_change = time.monotonic()
    seen: tuple[Any, ...] = ()
    line = ProgressLine()
    while True:
        data = progress(session, run_id)
        session.commit()  # end the read transaction so the next poll sees new rows
        assert data is not None
        marker = (
            data["done"],
            data["total"],
            data["planning_done"],
            tuple(data["batch_counts"].values()),
        )
        if not quiet:
            line.show(bar_line(data), step=marker)
        if data["ended"]:
            line.end()
            return data
        if marker != seen:
            seen, last_change = marker, time.monotonic()
        elif time.monotonic() - last_change > 120 and not quiet:
            line.end()
            say(
                "Nothing has moved for 2 minutes: is a worker running? Start one with"
                " 'flask mcsync worker'.",
                err=True,
            )
            last_change = time.monotonic()
        time.sleep(interval)


def bar_line(data: dict[str, Any], width: int = 30) -> str:
    filled = int(width * data["percent"] / 100)
    counts = data["batch_counts"]
    done = counts["done"] + counts["failed"]
    eta = f" ETA {data['seconds_left']}s" if data["seconds_left"] else ""
    planning = "" if data["planning_done"] else " (reading the shop...)"
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {data['percent']:5.1f}%"
        f"  {data['done']}/{count(data['total'], 'address', 'addresses')}"
        f"  batches {done}/{data['batch_count']}"
        f"  {data['rate']:.0f}/s{eta}{planning}   "
    )


def summary_line(data: dict[str, Any]) -> str:
    line = (
        f"Run {data['id']} {data['status']} in {data['elapsed']:.1f}s: exported"
        f" {data['created'] + data['updated']} ({data['created']} created,"
        f" {data['updated']} updated), excluded {data['excluded']}, invalid"
        f" {data['invalid']}, duplicates {data['duplicates']}, errors {data['errors']}."
    )
    if data.get("archived"):
        # Counted apart: neither created nor updated, and they receive nothing.
        line += f" {data['archived']} archived in Mailchimp: left archived."
    if data.get("skip_merge_validation"):
        line += " Required merge fields were not checked (skip_merge_validation)."
    if data.get("retries"):
        line += (
            f"\nPassing failures: {count(data['retries'], 'failed try', 'failed tries')} (at"
            f" most {data['most_retries']} for one batch), {data['retry_seconds']:.0f}s of"
            " backoff."
        )
    if data.get("message"):
        line += f"\n{inert(data['message'])}"
    return line
