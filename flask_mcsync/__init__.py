"""flask-mcsync: keep a Flask shop's customer and newsletter addresses in a Mailchimp audience."""

from .config import ConfigError
from .extension import MailchimpSync, state
from .models import metadata
from .source import SubscriberSource

__all__ = ["ConfigError", "MailchimpSync", "SubscriberSource", "metadata", "state"]
