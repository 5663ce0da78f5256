"""``flask --app example_app seed --customers N``: a realistic, deterministic customer base."""

from __future__ import annotations

import random

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from .models import Customer, db

FIRST = [
    "Camille",
    "Léa",
    "Manon",
    "Chloé",
    "Inès",
    "Jade",
    "Louise",
    "Emma",
    "Alice",
    "Lina",
    "Lucas",
    "Hugo",
    "Louis",
    "Gabriel",
    "Arthur",
    "Jules",
    "Adam",
    "Raphaël",
    "Nathan",
    "Tom",
    "Olivia",
    "Noah",
    "Mia",
    "Liam",
    "Sofia",
    "Ethan",
    "Zoé",
    "Théo",
    "Anna",
    "Paul",
]
LAST = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
]
DOMAINS = [
    "gmail.com",
    "yahoo.fr",
    "outlook.com",
    "orange.fr",
    "free.fr",
    "hotmail.com",
    "laposte.net",
    "protonmail.com",
    "icloud.com",
    "sfr.fr",
    "wanadoo.fr",
    "gmx.de",
]
# Throw-away domains a shop would put in its exclusion rules.
DISPOSABLE = ["mailinator.com", "yopmail.com", "guerrillamail.com"]
INVALID = [
    "{f}.{l}@",
    "{f}@@{d}",
    "{f}.{l}.{d}",
    "{f} {l}@{d}",
    "{f}..{l}@{d}",
    "@{d}",
    "{f}.{l}@{d}.",
    "{f}.{l}@localhost",
]
ASCII = str.maketrans("éèëêàâçîïôöûüÉ", "eeeeaaciioouuE")


def make_customers(count: int, seed: int = 2026) -> list[dict[str, object]]:
    """``count`` customers, the same for the same seed.

    About 70 % opted in to the newsletter; about 2 % have an invalid address, 2 % a
    disposable one, 1 % a ``test+...@`` one, and 1 % repeat an earlier address in
    another case (the same Mailchimp contact).
    """
    rng = random.Random(seed)
    customers: list[dict[str, object]] = []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        f, la = first.lower().translate(ASCII), last.lower().translate(ASCII)
        roll = rng.random()
        if roll < 0.02:
            email = rng.choice(INVALID).format(f=f, l=la, d=rng.choice(DOMAINS))
        elif roll < 0.04:
            email = f"{f}{i}@{rng.choice(DISPOSABLE)}"
        elif roll < 0.05:
            email = f"test+{f}{i}@{rng.choice(DOMAINS)}"
        elif roll < 0.06 and customers:
            earlier = str(rng.choice(customers)["email"])
            email = earlier.upper() if rng.random() < 0.5 else earlier.title()
        else:
            email = f"{f}.{la}{i}@{rng.choice(DOMAINS)}"
        customers.append(
            {
                "email": email,
                "first_name": first,
                "last_name": last,
                "newsletter": rng.random() < 0.7,
                # A bilingual shop: Mailchimp writes to each customer in their language.
                "language": "fr" if i % 2 == 0 else "en",
            }
        )
    return customers


@click.command("seed")
@click.option("--customers", "count", default=10_000, show_default=True, help="How many.")
@click.option("--seed", default=2026, show_default=True, help="Random seed (same seed, same shop).")
@click.option("--replace/--add", default=True, show_default=True, help="Empty the shop first.")
@with_appcontext
def seed(count: int, seed: int, replace: bool) -> None:
    """Fill the shop with COUNT realistic customers (deterministic)."""
    click.echo(seed_customers(count, seed, replace))


def seed_customers(count: int, seed: int = 2026, replace: bool = True) -> str:
    if replace:
        db.session.execute(sa.delete(Customer))
    rows = make_customers(count, seed)
    for start in range(0, len(rows), 5000):
        db.session.execute(sa.insert(Customer), rows[start : start + 5000])
    db.session.commit()
    opted = sum(1 for r in rows if r["newsletter"])
    return f"Seeded {count} customers ({opted} newsletter opt-ins)."
