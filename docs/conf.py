"""Sphinx configuration for the flask-mcsync docs (Pallets theme).

Built in CI with warnings as errors: ``sphinx-build -W -b html docs docs/_build/html``.
The API reference comes from the code's docstrings (autodoc), and the configuration page
is checked against ``flask_mcsync.config.DEFAULTS`` at build time (a key added, removed or
given another default without the page following is a build error), so the docs cannot
silently drift from the code. Nothing here needs the network.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

ROOT = Path(__file__).resolve().parent.parent
# Build from a checkout without installing (the docs extra only brings Sphinx and the theme).
sys.path.insert(0, str(ROOT))

import flask_mcsync  # noqa: E402
from flask_mcsync.config import DEFAULTS  # noqa: E402

project = "flask-mcsync"
copyright = "the flask-mcsync authors"
release = flask_mcsync.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "pallets_sphinx_themes"]
html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_title = f"flask-mcsync {release}"
html_static_path: list[str] = []
exclude_patterns = ["_build"]
# Hosts read the signature; the types are in the docstrings' :param: lines where they matter.
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
nitpicky = False

log = logging.getLogger(__name__)
CONFVAL = re.compile(r"^\.\. confval:: (MCSYNC_\w+)\n((?:   .*\n|\n)*)", re.M)
DEFAULT = re.compile(r"^   :default: (.*)$", re.M)


def _same_default(documented: str, expected: Any) -> bool:
    text = documented.strip().strip("`").strip("'\"")
    if expected is None:
        return text.lower().startswith("not set")
    if isinstance(expected, bool):  # before int: a bool is an int to isinstance
        return text.lower() == str(expected).lower()
    if isinstance(expected, (int, float)):
        try:
            return float(text.replace(",", "").replace("_", "")) == float(expected)
        except ValueError:
            return False
    return bool(text == str(expected))


def check_configuration_page(app: Sphinx, docname: str, source: list[str]) -> None:
    """Every ``MCSYNC_*`` key the code reads is documented, with the code's default."""
    if docname != "configuration":
        return
    documented = {m.group(1): m.group(2) for m in CONFVAL.finditer(source[0])}
    for key in sorted(DEFAULTS.keys() - documented.keys()):
        log.warning("configuration.rst: %s is read by the code but not documented", key)
    for key in sorted(documented.keys() - DEFAULTS.keys()):
        log.warning("configuration.rst: %s is documented but the code does not read it", key)
    for key, body in documented.items():
        found = DEFAULT.search(body)
        if key in DEFAULTS and (found is None or not _same_default(found.group(1), DEFAULTS[key])):
            log.warning(
                "configuration.rst: %s's :default: should say %r (flask_mcsync.config.DEFAULTS)",
                key,
                DEFAULTS[key],
            )


def setup(app: Sphinx) -> None:
    app.connect("source-read", check_configuration_page)
