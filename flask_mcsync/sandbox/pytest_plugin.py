"""Pytest fixtures for a running Mailchimp sandbox.

Registered through the ``pytest11`` entry point ``mcsync_sandbox``. One server per
test session (starting threads and sockets per test would be slow); each test gets
it reset to the initial state.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import SandboxServer


@pytest.fixture(scope="session")
def mailchimp_sandbox_server() -> Iterator[SandboxServer]:
    """The session's sandbox server (not reset between tests; prefer mailchimp_sandbox)."""
    with SandboxServer() as server:
        yield server


@pytest.fixture
def mailchimp_sandbox(mailchimp_sandbox_server: SandboxServer) -> Iterator[SandboxServer]:
    """A sandbox server reset to its initial state (default audience, no faults)."""
    mailchimp_sandbox_server.client.reset()
    yield mailchimp_sandbox_server
    # Leave no faults behind for code outside the fixture (e.g. session teardown).
    mailchimp_sandbox_server.client.clear_faults()
