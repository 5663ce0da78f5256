"""Signals a host sends when a subscriber signs up or changes.

Send them right where the change is added to the session, before the commit::

    from flask_mcsync.signals import subscriber_signed_up, subscriber_changed

    db.session.add(customer)
    subscriber_signed_up.send(current_app._get_current_object(), subscriber=customer)
    db.session.commit()

    customer.newsletter = False      # or customer.email = new_address
    subscriber_changed.send(
        current_app._get_current_object(), subscriber=customer, previous_email=old_address
    )
    db.session.commit()

The receiver only adds an outbox row to the same session (no network, no query), so the
change reaches Mailchimp if and only if the host's transaction commits. ``email=`` may be
passed instead of ``subscriber=``. To reuse a signal the host already has (for example
Flask-Security-Too's ``user_registered``), see :meth:`MailchimpSync.connect_signal`.

The other way, :data:`mailchimp_changed` tells the host what happened in Mailchimp (an
unsubscribe from an e-mail, a bounce, a profile or address change) so it can update its
own rows; signals the host sends while handling it do not sync back out.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A new subscriber (or customer) was added to the session. Keywords: ``subscriber``
#: (an instance of the source model) or ``email``.
subscriber_signed_up = _signals.signal("mcsync-subscriber-signed-up")

#: A subscriber changed: newsletter opt-out or opt-in, new address, new name. Keywords:
#: ``subscriber`` or ``email``, ``previous_email`` when the address changed, and
#: ``newsletter=True`` / ``False`` when the customer opted in / out of the newsletter.
#: Only an explicit ``newsletter=True`` (or a signup) makes Mailchimp e-mail a
#: confirmation to someone it holds unsubscribed; a plain change never alters a status.
subscriber_changed = _signals.signal("mcsync-subscriber-changed")

#: Something changed in Mailchimp (webhook or reconcile). Sent inside the transaction that
#: records it, before the commit: change the host's rows in ``db.session`` and they commit
#: with the record. Keywords: ``change`` (a :class:`flask_mcsync.changes.MailchimpChange`),
#: and its parts ``email``, ``status``, ``reason``, ``merge_fields``, ``new_email``.
mailchimp_changed = _signals.signal("mcsync-mailchimp-changed")

#: Set in ``session.info`` while a change from Mailchimp is applied: auto-sync signals
#: sent meanwhile add no outbox row, so the change does not echo back to Mailchimp.
FROM_MAILCHIMP = "mcsync_from_mailchimp"
