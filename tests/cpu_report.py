"""``--cpu-report FILE``: the CPU each test cost, with everything it started.

The suite is bound by CPU on two cores (the whole machine ~99 % busy through a run), so
its wall time falls only with its CPU, and ``--durations`` says little about that: a
test that waits on a throttled sandbox takes long and costs little. For each test this
adds up the CPU time, from its setup to its teardown, of the test's process and every
process below it: workers from the fork server, Chromium and Playwright's driver, the
test process's own ``redis-server``, CLI commands, the live ones as read from ``/proc``
and the ended ones through their parents' ``cutime``. Not counted: PostgreSQL's server
processes (the postmaster's children), shared by every test process.

Each test process writes ``FILE.<worker>`` (tab-separated: CPU seconds, wall seconds,
test id); the run's summary lists the costliest tests and the total. Linux only (it
reads ``/proc``). conftest.py registers this module as a plugin only when the option is
given, so without it none of these hooks runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SHOWN = 15

_started: dict[str, tuple[float, float]] = {}
_costs: list[tuple[float, float, str]] = []


def add_option(parser: pytest.Parser) -> None:
    """Called from conftest's pytest_addoption (a plugin registered later adds none)."""
    parser.addoption(
        "--cpu-report",
        metavar="FILE",
        help="write each test's CPU seconds (its process tree's) to FILE.<worker> and list"
        " the costliest in the summary",
    )


def _tree_cpu() -> float:
    """CPU seconds of this process and all its descendants, ended ones included."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # ended while we looked
        # The command name may hold spaces and parentheses: fields start after the last ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        children.setdefault(int(fields[1]), []).append((int(entry), ticks))
    total = 0
    below = [os.getpid()]
    while below:
        for pid, ticks in children.get(below.pop(), []):
            total += ticks
            below.append(pid)
    own = os.times()
    return total / TICKS + own.user + own.system + own.children_user + own.children_system


def _path(config: pytest.Config) -> Path:
    return Path(config.getoption("--cpu-report"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove an earlier run's files (it may have had more test processes)."""
    if not hasattr(session.config, "workerinput"):
        path = _path(session.config)
        for old in path.parent.glob(f"{path.name}.*"):
            old.unlink()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _started[item.nodeid] = (_tree_cpu(), time.monotonic())


def _finish(nodeid: str) -> None:
    if nodeid in _started:
        cpu, wall = _started.pop(nodeid)
        _costs.append((_tree_cpu() - cpu, time.monotonic() - wall, nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """The last test of a process: measured before its teardown, which also ends the
    session's fixtures (Chromium, redis-server, the fork server). Their CPU leaves the
    tree with them, so measured after it the last test came out negative (-4 to -9
    core-seconds, one per test process, in a full run)."""
    if nextitem is None:
        _finish(item.nodeid)
    yield


def pytest_runtest_logfinish(nodeid: str) -> None:
    _finish(nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = _path(session.config)
    if not _costs:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    lines = [f"{cpu:.2f}\t{wall:.2f}\t{nodeid}\n" for cpu, wall, nodeid in _costs]
    Path(f"{path}.{worker}").write_text("".join(lines))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    terminal = terminalreporter
    if hasattr(config, "workerinput"):  # the xdist controller reports
        return
    path = _path(config)
    rows: list[tuple[float, float, str]] = []
    for part in sorted(path.parent.glob(f"{path.name}.*")):
        for line in part.read_text().splitlines():
            cpu, wall, nodeid = line.split("\t", 2)
            rows.append((float(cpu), float(wall), nodeid))
    if not rows:
        return
    rows.sort(reverse=True)
    terminal.write_sep("=", f"costliest {min(SHOWN, len(rows))} tests by CPU (--cpu-report)")
    for cpu, wall, nodeid in rows[:SHOWN]:
        terminal.write_line(f"{cpu:7.1f} core-s {wall:7.1f} s  {nodeid}")
    total = sum(cpu for cpu, _, _ in rows)
    terminal.write_line(f"{total:7.1f} core-s in all, {len(rows)} tests; per test: {path}.*")
