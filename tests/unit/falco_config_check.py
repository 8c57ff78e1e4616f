"""Falco 0.44.1's schema and the audit-only checker from ``../shared``, where it is present.

``../shared`` sits beside the main checkout, or beside a worktree's parent directory; a clean
clone (CI) lacks it, and the tests that use it skip.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SHARED = next(
    (p / "shared" for p in Path(__file__).resolve().parents if (p / "shared" / "tools").is_dir()),
    Path("shared"),
)
SCHEMA = SHARED / "falco" / "falco-0.44.1-config.schema.json"
CHECKER = SHARED / "tools" / "falco-config-check"
# The checker's trap for a k8saudit that only its own pod can reach: by design here, as the
# audit intake in front of it is the webhook's listener (TLS, the token) on every interface.
LOOPBACK_BY_DESIGN = "k8saudit open_params 'http://127.0.0.1:9766/k8s-audit' should bind all"


def checker_findings(path: Path) -> list[str]:
    """The audit-only checker's findings for the file, but the designed loopback listener."""
    result = subprocess.run(
        [sys.executable, str(CHECKER), str(path)], capture_output=True, text=True, check=False
    )
    findings = [line for line in result.stdout.splitlines() if line.startswith("trap:")]
    assert result.returncode == (1 if findings else 0), result.stdout + result.stderr
    return [line for line in findings if LOOPBACK_BY_DESIGN not in line]
