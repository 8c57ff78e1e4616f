"""Every hook is a fresh process: the COS and TLS libraries load only on hooks that need them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# charmlibs holds both the OTLP and the tls-certificates library; cryptography is the TLS cost.
COS_MODULES = (
    "cosl",
    "charmlibs",
    "cos",
    "grafana_dashboard",
    "prometheus_scrape",
    "cryptography",
)


def test_importing_the_charm_loads_no_cos_or_tls_library():
    code = (
        "import sys, charm; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {COS_MODULES!r}))"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'lib'}"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "[]"
