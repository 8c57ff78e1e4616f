"""Every hook is a fresh process: the COS libraries load only on hooks that need them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Modules with their submodules. Only the OTLP part of charmlibs: the TLS certificates library
# shares its namespace and loads with the charm.
COS_MODULES = (
    "cosl",
    "charmlibs.interfaces.otlp",
    "cos",
    "grafana_dashboard",
    "prometheus_scrape",
)


def test_importing_the_charm_loads_no_cos_module():
    code = (
        "import sys, charm; "
        f"print(sorted(m for m in sys.modules for c in {COS_MODULES!r}"
        " if m == c or m.startswith(c + '.')))"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'lib'}"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "[]"
