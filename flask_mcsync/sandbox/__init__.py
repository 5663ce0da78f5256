"""A local emulator of the Mailchimp Marketing API v3 subset flask-mcsync uses.

It stands in for Mailchimp in tests, the demo and benchmarks: stateful, threaded, with
batch operations processed in the background and runtime fault injection. It imports
nothing from the rest of flask_mcsync, so it can be used on its own.

Where real Mailchimp's behaviour is not published, the sandbox picks the stricter
reading. Uncertain points, one line each with the evidence:

- Archived + PUT with only status_if_new: stays archived (reports of other integrations:
  a re-add "doesn't stick" until status is sent); that its merge fields are updated is a guess.
- POST of an archived address re-adds it with the given status (common practice in
  integrations; not documented).
- Merge value null: refused with the anyOf message like a boolean (mc-magento #332/#704
  saw "Schema describes string, NULL found instead" and anyOf errors for null values).
- Merge values of date/phone/url/email/zip/radio/dropdown fields are not checked against
  their format or choices (Mailchimp's per-type rules are not published).
- status pending for a cleaned or abuse-reported member: refused as compliance state
  (no source; a confirmation e-mail to a bounced or complaining address seems unlikely).
- Setting an already pending member to pending again sends no new confirmation e-mail.
- since_last_changed / before_last_changed / unsubscribed_since bounds are strict
  (docs say "after"/"before"); timestamps are whole seconds, so readers should overlap.
- Batch submission error texts for a bad method or a /3.0 path are plausible wording; the
  field names follow Mailchimp's "operations.item:N.params" (drewm/mailchimp-api #142).
- The empty-body 403 comes with Content-Type text/html (only "no JSON" is reported).
- Merge field creation errors (bad type, duplicate or long tag) use plausible wording.
- Webhook URL check: the GET and "We couldn't verify the URL is working. Please double
  check and try again. HTTP Code: N" are reported (mailchimp-client-lib-codegen #11,
  veda mailchimp #101); the title "Invalid Resource" and code 0 for no answer are guesses.
- Webhook events/sources left out of a create are off; a duplicate URL is refused
  (reported in mailchimp-client-lib-codegen #11, wording unknown).
- Callbacks: fired_at in UTC; cleaned ignores sources (Mailchimp makes it); an address
  change sends only upemail; API archiving sends nothing; no delivery retries.
- unsubscribe_reason texts per source and the marketing-permission refusal wording are
  this sandbox's; "Invalid interest ID: '<id>'." is Mailchimp's (drewm/mailchimp-api #294).
- Tag names match case-sensitively; tag changes move no last_changed and call no webhook.
- A PUT that changes nothing (a batch sent again) moves no last_changed: not published,
  and the lenient reading (if Mailchimp moves it, a re-sent member looks changed since).
- A create is stamped once: a new member's language or interests do not move last_changed
  past timestamp_opt. Not published; the API reference's member examples show both times
  equal for a new subscribed contact, and a create is one write on Mailchimp's side.
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
