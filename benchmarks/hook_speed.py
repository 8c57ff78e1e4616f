"""Cost of a config-changed hook with 1 MB of custom_rules, against small rules in the same run.

Run by hand: `python benchmarks/hook_speed.py [--tree DIR] [--runs N]`. Each case deploys the
charm in Scenario (Falco's answers simulated as in the unit tests: dry-run, metrics stand-in,
Kubernetes API stand-in on 127.0.0.1), then times config-changed hooks that change nothing,
which is what every later hook of a unit pays, and the one hook that brings the rules in.
``--tree /work/main`` measures another checkout's charm with this same script: the numbers to
compare against. Target: the 1 MB hooks at 0.3 s or less.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAX_RULES_BYTES = 1_048_576

SMALL_RULES = """\
- list: allowed_k8s_users
  items: ["gitlab-ci"]
  override:
    items: append
- rule: CI deploys outside its namespace
  desc: The CI service account changed something outside the ci namespace.
  condition: kevt and ka.user.name="system:serviceaccount:ci:deployer" and ka.target.namespace!=ci
  output: CI deployed outside ci (verb=%ka.verb resource=%ka.target.resource)
  priority: WARNING
  source: k8s_audit
  tags: [k8s, ci]
"""


def large_rules() -> str:
    """About 1 MB of distinct, realistic rules (~2,800), under the charm's 1 MiB limit."""
    rules: list[str] = []
    size = 0
    index = 0
    while True:
        rule = (
            f"- rule: Configmap change in ns-{index:04d}\n"
            f"  desc: An unlisted user changed a configmap.\n"
            f'  condition: kevt and ka.target.namespace = "ns-{index:04d}" and'
            ' ka.target.resource = "configmaps" and not ka.user.name in (allowed_k8s_users)\n'
            f"  output: Configmap changed (user=%ka.user.name"
            " verb=%ka.verb name=%ka.target.name)\n"
            "  priority: NOTICE\n"
            "  source: k8s_audit\n"
            f"  tags: [k8s, custom, team-{index % 40:02d}]\n"
        )
        if size + len(rule) > MAX_RULES_BYTES - 4096:
            return "".join(rules)
        rules.append(rule)
        size += len(rule)
        index += 1


@contextlib.contextmanager
def charm_env(tree: Path, work: Path) -> Iterator[dict[str, Any]]:
    """Import the charm and its unit-test pod helpers from ``tree``; serve the stand-ins."""
    for sub in ("tests/unit", "lib", "src"):
        sys.path.insert(0, str(tree / sub))
    pod_helpers = importlib.import_module("charm_pod")
    kube_api = importlib.import_module("fakes.fake_kube_api")
    testing = importlib.import_module("ops.testing")
    charm = importlib.import_module("charm")
    root = work / "charm"
    (root / "plugins").mkdir(parents=True)
    (root / "plugins" / "libk8saudit.so").write_bytes(b"\x7fELF k8saudit stand-in")
    (root / "plugins" / "libjson.so").write_bytes(b"\x7fELF json stand-in")
    (root / "plugins" / "k8s_audit_rules.yaml").write_text(pod_helpers.STOCK_RULES)
    for package in ("falco_forwarder", "audit_intake"):  # what the charm packs into the pod
        if (tree / "src" / package).is_dir():
            shutil.copytree(tree / "src" / package, root / "src" / package)
    charm_rules = importlib.import_module("constants").CHARM_RULES_FILE
    (root / charm_rules).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tree / charm_rules, root / charm_rules)
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(kube_api.serve(kube_api.FakeApiServer()))
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(
            "clusters: [{name: k, cluster: {server: '" + url + "'}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
            "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
            "current-context: c\n"
        )
        os.environ["KUBECONFIG"] = str(kubeconfig)
        yield {
            "ctx": testing.Context(charm.FalcoK8sCharm, charm_root=root),
            "testing": testing,
            "falco_container": pod_helpers.falco_container,
            "new_falco_fs": pod_helpers.new_falco_fs,
            "pod": pod_helpers.pod,
            "stack": stack,
        }


def falco_metrics(env: dict[str, Any], fs: Path) -> None:
    """Falco's /metrics stand-in, for a charm that asks Falco to confirm its reloads."""
    try:
        falco_reload = importlib.import_module("falco._reload")
        standin = importlib.import_module("fakes.fake_falco_metrics")
    except ImportError:
        return  # a charm that does not ask
    port = env["stack"].enter_context(standin.FalcoMetrics(fs / "etc-falco").serving())
    falco_reload.METRICS_PORT = port


def time_case(
    env: dict[str, Any], work: Path, name: str, config: dict[str, str], runs: int
) -> tuple[Timing, Timing]:
    """The hook that brings ``config`` in, and the median of unchanged hooks after it."""
    testing = env["testing"]
    ctx = env["ctx"]
    fs = env["new_falco_fs"](work / name)
    falco_metrics(env, fs)
    container = env["falco_container"](fs)
    state = testing.State(
        containers=env["pod"](container),
        leader=True,
        relations={testing.PeerRelation("falco-peers")},
    )
    state = ctx.run(ctx.on.pebble_ready(container), state)
    state = dataclasses.replace(state, config=config)
    first = Timing()
    with first:
        state = ctx.run(ctx.on.config_changed(), state)
    assert state.unit_status.name == "active", state.unit_status
    again: list[Timing] = []
    for _ in range(runs):
        with Timing() as timing:
            state = ctx.run(ctx.on.config_changed(), state)
        again.append(timing)
    return first, Timing(
        statistics.median(t.wall for t in again), statistics.median(t.cpu for t in again)
    )


@dataclasses.dataclass
class Timing:
    """Wall-clock and CPU seconds of one hook; CPU time is steadier on a shared machine."""

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> Timing:
        self.wall, self.cpu = -time.perf_counter(), -time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall += time.perf_counter()
        self.cpu += time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose charm to time")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    large = large_rules()
    cases = {
        "small rules (baseline)": {"custom_rules": SMALL_RULES},
        f"1 MB rules ({large.count('- rule:')} rules)": {"custom_rules": large},
        "1 MB rules + disabled_rules": {
            "custom_rules": large,
            "disabled_rules": "tag:team-07, Configmap change in ns-00*",
        },
    }
    with tempfile.TemporaryDirectory() as tmp, charm_env(args.tree.resolve(), Path(tmp)) as env:
        results = {
            name: time_case(env, Path(tmp), f"case{i}", config, args.runs)
            for i, (name, config) in enumerate(cases.items())
        }
    print(f"charm from {args.tree.resolve()}; wall / CPU ms per hook, ratio to the baseline")
    base = results["small rules (baseline)"]
    print(f"{'case':30s} {'hook bringing the rules in':>30s} {'unchanged hook (median)':>30s}")
    for name, timings in results.items():
        cells = [
            f"{t.wall * 1000:6.0f} / {t.cpu * 1000:4.0f} ms"
            f"  x{t.wall / b.wall:4.1f} / x{t.cpu / b.cpu:4.1f}"
            for t, b in zip(timings, base, strict=True)
        ]
        print(f"{name:30s} {cells[0]:>30s} {cells[1]:>30s}")


if __name__ == "__main__":
    main()
