"""Status messages as an operator reads them in `juju status`: one short line, no secret.

Parts of a message come from outside (Graylog's answers, OS errors): whatever they hold,
the status stays at most 120 characters, without control or formatting characters (a
right-to-left override would reorder the line), and never shows a secret's value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

MAX_CHARS: Final = 120


def status_text(message: str, secrets: Iterable[str] = ()) -> str:
    """``message`` with ``secrets`` hidden, on one printable line of at most 120 characters."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "<secret>")
    line = " ".join("".join(c if c.isprintable() else " " for c in message).split())
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 1] + "…"
