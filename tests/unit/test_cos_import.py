"""Every hook is a fresh process: COS, TLS and cluster libraries load only where needed."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# charmlibs holds both the OTLP and the tls-certificates library; cryptography is the TLS cost.
# The cos wing's face is light; its publishing modules are what a COS hook adds.
LIBRARIES = ("cosl", "charmlibs", "cryptography", "lightkube", "pydantic_settings")
COS_WING = ("cos._publish", "cos._grafana_dashboard", "cos._prometheus_scrape")


def test_importing_the_charm_loads_no_cos_tls_or_cluster_library():
    code = (
        "import sys, charm; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {LIBRARIES!r}"
        f" or m in {COS_WING!r}))"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'lib'}"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "[]"
