"""Every hook is a fresh process: the COS libraries load only on hooks that need them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Top-level COS modules, and the OTLP library among charmlibs (the certificates library there
# serves the certificates relation, which every hook observes).
COS_MODULES = ("cosl", "cos", "grafana_dashboard", "prometheus_scrape")
COS_PACKAGES = ("charmlibs.interfaces.otlp",)


def test_importing_the_charm_loads_no_cos_module():
    code = (
        "import sys, charm; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {COS_MODULES!r}"
        f" or m.startswith({COS_PACKAGES!r})))"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'lib'}"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "[]"
