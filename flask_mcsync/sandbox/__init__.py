"""A local emulator of the Mailchimp Marketing API v3 subset flask-mcsync uses.

It stands in for Mailchimp in tests, the demo and benchmarks: stateful, threaded, with
batch operations processed in the background and runtime fault injection. It imports
nothing from the rest of flask_mcsync, so it can be used on its own.
"""

from __future__ import annotations

from .client import SandboxClient
from .server import SandboxServer, create_sandbox_app, serve
from .state import DEFAULT_API_KEY, DEFAULT_LIST_ID

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_LIST_ID",
    "SandboxClient",
    "SandboxServer",
    "create_sandbox_app",
    "serve",
]
