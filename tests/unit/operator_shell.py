"""Runs shell text the way an operator's terminal would: bash, with the fake CLIs on PATH.

What the charm hands out (and the README's commands) must work as pasted or piped, so the
tests run the exact text through a real bash and read back what each fake command received.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes import fake_cli

GOJQ = Path(__file__).resolve().parents[2] / "build" / "bin" / "gojq"


@dataclass
class OperatorShell:
    """A bash with juju, microk8s, k8s, sudo, snap and systemctl faked, and jq (gojq)."""

    root: Path

    def __post_init__(self) -> None:
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        script = self.bin / "fake_cli.py"
        # The fake runs under the tests' own Python whatever `python3` is on PATH.
        script.write_text(f"#!{sys.executable}\n" + Path(fake_cli.__file__).read_text())
        script.chmod(0o755)
        for name in fake_cli.NAMES:
            (self.bin / name).symlink_to(script)
        # jq as the README pipes into it: the pinned gojq tools/install-jq builds, tox runs it.
        assert GOJQ.exists(), f"{GOJQ} is missing: run tools/install-jq"
        (self.bin / "jq").symlink_to(GOJQ)
        self.log = self.root / "calls.jsonl"
        self.state_file = self.root / "state.json"
        self.state = {}

    @property
    def state(self) -> dict[str, Any]:
        """What the fake CLIs know: Juju config, action results, ConfigMaps."""
        return json.loads(self.state_file.read_text())

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(value))

    def run(self, text: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``text`` as a bash script fed on stdin, as ``… | bash`` does."""
        env = {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "FAKE_CLI_LOG": str(self.log),
            "FAKE_CLI_STATE": str(self.state_file),
        }
        bash = shutil.which("bash")
        assert bash is not None
        return subprocess.run(
            [bash], input=text, text=True, capture_output=True, env=env, check=check
        )

    def calls(self, name: str | None = None) -> list[list[str]]:
        """Every recorded call (command name first), or only those of ``name``."""
        return [call for call, _ in self.calls_in_models(name)]

    def calls_in_models(self, name: str | None = None) -> list[tuple[list[str], str]]:
        """Every recorded call with the ``JUJU_MODEL`` it ran under ("" when unset)."""
        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [
            (record["argv"], record["model"])
            for record in records
            if name is None or record["argv"][0] == name
        ]
