"""How the CLI writes to a terminal: inert text, times with their zone, counted nouns,
and a progress line that redraws itself only where it can.

Addresses, merge fields and Mailchimp's error texts come from outside: printed raw, an
escape sequence in one of them would move the cursor, recolour or retitle the owner's
terminal, or hide the lines before it. :func:`inert` shows every control character as
a visible ``\\xNN`` instead, as the admin pages show such text escaped.
"""

from __future__ import annotations

import re
import sys
from datetime import timezone
from typing import IO, Any

import click

from .times import parse_time

# C0 and C1 controls, DEL, and the Unicode marks that reorder or hide what follows.
_MARKS = r"\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069"
_CONTROL = re.compile(rf"[\x00-\x1f{_MARKS}]")
_CONTROL_BUT_NEWLINE = re.compile(rf"[\x00-\x09\x0b-\x1f{_MARKS}]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(value: Any) -> str:
    """``value`` as text a terminal shows as it is: every control character made visible."""
    return _CONTROL.sub(_visible, "" if value is None else str(value))


def say(message: str = "", err: bool = False) -> None:
    """Print one message; its own line breaks stay, any other control character shows."""
    click.echo(_CONTROL_BUT_NEWLINE.sub(_visible, message), err=err)


def when(value: Any) -> str:
    """A stored time (a datetime or ISO 8601 text) as ``2026-11-25 14:57:53 UTC``."""
    if value is None or value == "":
        return "-"
    moment = parse_time(value)
    if moment is None:
        return inert(value)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def count(number: int, singular: str, plural: str | None = None) -> str:
    """``1 address``, ``2 addresses``."""
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"


class ProgressLine:
    """One line redrawn in place on a terminal; elsewhere (a log, a pipe) one plain line per
    step, printed only when the step changes, so a log file does not fill with ``\\r``."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.redraw = self.stream.isatty()
        self._last_step: Any = None
        self._drawn = False

    def show(self, line: str, step: Any) -> None:
        """Show ``line``; ``step`` is what must change for a plain output to print again."""
        if self.redraw:
            click.echo("\r" + line, nl=False, file=self.stream)
            self._drawn = True
        elif step != self._last_step:
            click.echo(line.rstrip(), file=self.stream)
        self._last_step = step

    def end(self) -> None:
        if self._drawn:
            click.echo("", file=self.stream)
            self._drawn = False
