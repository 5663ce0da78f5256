"""Extracting the admin pages' messages the way the catalogs are built (see README)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_mcsync"
# The same as babel.cfg; plural_forms() hands both forms of a sentence to the scripts.
METHOD_MAP = [
    ("**/sandbox/**.py", "ignore"),
    ("**.py", "python"),
    ("**/templates/**.html", "jinja2"),
]
KEYWORDS = {**DEFAULT_KEYWORDS, "plural_forms": (1, 2), "NP_": ((1, "c"), 2)}


def extract_catalog() -> Catalog:
    catalog = Catalog(domain="mcsync")
    for _filename, lineno, message, comments, context in extract_from_dir(
        str(PACKAGE), METHOD_MAP, keywords=KEYWORDS
    ):
        catalog.add(message, None, [(_filename, lineno)], auto_comments=comments, context=context)
    return catalog
