"""Import cost of the charm module, paid by every hook (each hook is a fresh Python process).

Run by hand: `python benchmarks/charm_import.py [runs]`. Times fresh interpreters importing
`charm` against a baseline measured in the same run (`import ops`, the floor every ops charm
pays), and shows what importing lightkube, or the COS modules, at module top would add.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "baseline: import ops": "import ops",
    "import charm": "import charm",
    "import charm + cluster (lightkube)": "import charm, webhook._cluster",
    # What a hook with a COS relation adds: cosl and the OTLP library, imported only there.
    "import charm + cos (a COS hook)": "import charm, cos._publish",
}


def measure(statement: str, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'lib'}"}
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, env=env)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    for statement in CASES.values():
        measure(statement, 2)  # warm the page cache and .pyc files
    medians = {name: statistics.median(measure(stmt, runs)) for name, stmt in CASES.items()}
    baseline = medians["baseline: import ops"]
    for name, value in medians.items():
        print(f"{name:38s} {value * 1000:7.1f} ms  ratio {value / baseline:4.2f}")


if __name__ == "__main__":
    main()
