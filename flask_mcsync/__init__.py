"""flask-mcsync: keep a Flask shop's customer and newsletter addresses in a Mailchimp audience."""

from .app_state import state
from .errors import ConfigError, McSyncError
from .extension import MailchimpSync
from .models import metadata
from .source import SubscriberSource

# The one place the version is written: pyproject.toml reads it from here at build time.
__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "MailchimpSync",
    "McSyncError",
    "SubscriberSource",
    "__version__",
    "metadata",
    "state",
]
