"""What the example shop does when something changes in Mailchimp.

flask-mcsync calls :func:`apply_mailchimp_change` (``SubscriberSource(on_mailchimp_change=
...)``) inside the transaction that records the change: the shop only edits its rows in
``db.session``, and they commit together with the record.
"""

from __future__ import annotations

from flask_mcsync.changes import MailchimpChange

from .models import Customer, db


def apply_mailchimp_change(change: MailchimpChange) -> str | None:
    """Unsubscribed, cleaned or archived: newsletter off. Subscribed through Mailchimp:
    newsletter on. A new address in Mailchimp: the customer's address follows."""
    customers = db.session.scalars(
        db.select(Customer).where(db.func.lower(Customer.email) == change.email.strip().lower())
    ).all()
    if not customers:
        return "Not a customer of the shop: nothing to change."
    done = []
    for customer in customers:
        if change.new_email:
            customer.email = change.new_email
        if change.newsletter_off and customer.newsletter:
            customer.newsletter = False
        elif change.kind == "subscribe" and not customer.newsletter:
            customer.newsletter = True
    if change.new_email:
        done.append(f"address changed to {change.new_email}")
    if change.newsletter_off:
        done.append("newsletter flag cleared")
    elif change.kind == "subscribe":
        done.append("newsletter flag set")
    count = len(customers)
    who = "1 customer" if count == 1 else f"{count} customers"
    return f"{who}: {', '.join(done)}." if done else f"{who}: nothing to change."
