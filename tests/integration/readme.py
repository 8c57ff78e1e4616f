"""The README's command blocks, read the same way by the unit tests and the integration suite.

What the README promises is what the suites run: they take the commands from here, never from
a copy of their own.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FIRST_ALERT = "## First alert in five commands"
MICROK8S = "MicroK8s"
CHARMED_KUBERNETES = "Charmed Kubernetes"


def section(heading: str) -> str:
    """The README's text under ``heading`` (a ``## `` line), up to the next one."""
    return README.read_text().split(f"{heading}\n", 1)[1].split("\n## ", 1)[0]


def shell_block(text: str) -> list[str]:
    """The non-empty lines of the first ```shell block in ``text``."""
    block = re.search(r"```shell\n(.*?)```", text, re.DOTALL)
    assert block is not None, "no shell block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def first_alert(cluster: str) -> list[str]:
    """The commands of the README's first-alert block for ``cluster`` (bold in the README)."""
    return shell_block(section(FIRST_ALERT).split(f"**{cluster}**", 1)[1])


def ci_command() -> list[str]:
    """The README's test command (what CI runs), line by line."""
    return shell_block(section("## Test"))
