"""Cost of hooks with the largest option values an operator can set, before and after a change.

Run by hand: `python benchmarks/large_option_hooks.py [--before REF|DIR] [--runs N]`. For each
case the charm of each tree (``--before``: a git ref, default main, or a checkout; and this one)
is deployed in
Scenario with its peer relation, as in the unit tests (Falco's answers simulated, the Kubernetes
API stand-in on 127.0.0.1), in a process of its own; then it times the config-changed hook that
brings the value in and the median of the update-status hooks after it, which every unit pays
every five minutes. Ratios are against the defaults' hooks of the same checkout in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import tree_of
from hook_speed import Timing, charm_env, falco_metrics

ROOT = Path(__file__).resolve().parents[1]


def audit_policy(size: int) -> str:
    """A valid audit policy of about ``size`` bytes: one rule per team, as a large cluster has."""
    head = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
    parts, total, team = [head], len(head), 0
    while True:
        rule = (
            f'  - level: RequestResponse\n    users: ["team-{team:05d}-deployer"]\n'
            f'    verbs: [create, update, patch, delete]\n    namespaces: ["ns-{team:05d}"]\n'
            "    resources:\n      - group: ''\n        resources: [pods, configmaps, services]\n"
            "      - group: apps\n        resources: [deployments, statefulsets]\n"
        )
        if total + len(rule) > size:
            return "".join([*parts, "  - level: Metadata\n"])
        parts.append(rule)
        total += len(rule)
        team += 1


def disabled_rules(size: int) -> str:
    """``size`` bytes of 1,024 distinct long rule names, none of which exists."""
    length = size // 1024
    return ",".join(f"{number:04d} ".ljust(length - 1, "x") for number in range(1024))


CASES: dict[str, dict[str, str]] = {
    "defaults (baseline)": {},
    "audit_policy 0.99 MB": {"audit_policy": audit_policy(990_000)},
    "audit_policy 1.08 MB": {"audit_policy": audit_policy(1_080_000)},
    "disabled_rules 4 MiB": {"disabled_rules": disabled_rules(4 * 1024 * 1024)},
}


def measure(tree: Path, case: str, runs: int) -> dict[str, Any]:
    """In this process: deploy ``tree``'s charm, bring ``case`` in, time the hooks."""
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp, charm_env(tree, Path(tmp)) as env:
        testing, ctx = env["testing"], env["ctx"]
        fs = env["new_falco_fs"](Path(tmp) / "fs")
        falco_metrics(env, fs)
        container = env["falco_container"](fs)
        state = testing.State(
            containers=env["pod"](container),
            leader=True,
            model=testing.Model(name="bench"),
            relations={testing.PeerRelation("falco-peers")},
        )
        state = ctx.run(ctx.on.pebble_ready(container), state)
        state = dataclasses.replace(state, config=CASES[case])
        with Timing() as first:
            state = ctx.run(ctx.on.config_changed(), state)
        again: list[Timing] = []
        for _ in range(runs):
            with Timing() as timing:
                state = ctx.run(ctx.on.update_status(), state)
            again.append(timing)
        [peers] = [r for r in state.relations if r.endpoint == "falco-peers"]
        return {
            "first": first.wall,
            "update_status": statistics.median(t.wall for t in again),
            "status": f"{state.unit_status.name}: {state.unit_status.message[:60]}",
            "peer_bytes": len(json.dumps(dict(peers.local_unit_data))),
        }


def in_own_process(tree: Path, case: str, runs: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--tree", str(tree), "--case", case, "--runs", str(runs)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="a git ref (default main) or a checkout")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args.tree.resolve(), args.case, args.runs)))
        return
    before = Path(args.before)
    trees = {
        "before": before.resolve() if before.is_dir() else tree_of(args.before),
        "after": ROOT,
    }
    for side, tree in trees.items():
        print(f"{side}: {tree}", flush=True)
        base = in_own_process(tree, "defaults (baseline)", args.runs)
        for case in CASES:
            result = in_own_process(tree, case, args.runs)
            print(
                f"  {case:22s} config-changed {result['first']:6.2f} s"
                f" (x{result['first'] / base['first']:5.1f}),"
                f" update-status {result['update_status']:6.2f} s"
                f" (x{result['update_status'] / base['update_status']:5.1f}),"
                f" peer data {result['peer_bytes']:>9d} B; {result['status']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
