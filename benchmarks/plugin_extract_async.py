"""Field extraction through the real plugins with plugin-sdk-go's async extractor on and off.

Run by hand: `python benchmarks/plugin_extract_async.py [seconds]` (after `tox -e unit` has
built the plugins). Each side runs in its own process, as each Go runtime keeps one `useAsync`
for all its states: it loads k8saudit and json through the C API harness of
`tests/unit/plugins/`, with the charm's rendered init_config and `useAsync` set to the side's
value, posts a recorded 400-event apiserver EventList to k8saudit's listener, then extracts
every field the stock rules read from each event, one field per call as Falco's filterchecks
do, from a single caller thread. It prints each side's events/s and their ratio.

The async extractor only starts when the plugin's Go runtime has GOMAXPROCS > 1: pinned to one
CPU (`taskset -c 0 python ...`) both sides take the plain path. A CPU quota (a pod limit) does
not lower GOMAXPROCS for these plugins (their go.mod predates Go 1.25's container-aware
default). To run under a one-CPU quota on a cgroup v1 host:
`mkdir /sys/fs/cgroup/cpu/bench && echo 100000 > /sys/fs/cgroup/cpu/bench/cpu.cfs_quota_us &&
sh -c 'echo $$ > /sys/fs/cgroup/cpu/bench/cgroup.procs && exec python ...'`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "lib"), str(ROOT / "tests" / "unit" / "plugins")]

import yaml  # noqa: E402
from falco_plugin_api import Plugin, PluginError  # noqa: E402
from k8saudit_listener import loopback_params, open_k8saudit  # noqa: E402
from rule_fields import field_requests, owner  # noqa: E402

from constants import FALCO_RULES_D, K8S_AUDIT_RULES  # noqa: E402
from falco._falco_yaml import FalcoSettings, render_falco_yaml  # noqa: E402

BUILD = ROOT / "build" / "plugins"
# The recorded apiserver batch: ../shared beside the main checkout or a worktree's parent.
RECORDED = "shared/real-e2e/apiserver-eventlists/batch-0013.json"
EVENT_LIST = Path(
    os.environ.get("FALCO_K8S_EVENT_LIST")
    or next((p / RECORDED for p in ROOT.parents if (p / RECORDED).is_file()), RECORDED)
)
SOURCE = "k8s_audit"


def rendered_plugins() -> dict[str, dict[str, Any]]:
    """The charm's falco.yaml plugin entries, by name."""
    config = yaml.safe_load(render_falco_yaml(FalcoSettings(), (K8S_AUDIT_RULES, FALCO_RULES_D)))
    return {entry["name"]: entry for entry in config["plugins"]}


def side(use_async: bool, seconds: float) -> dict[str, Any]:
    """One side, in this process: events/s of extracting the stock rules' fields."""
    k8saudit = Plugin(BUILD / "libk8saudit.so")
    json_plugin = Plugin(BUILD / "libjson.so")
    fields = field_requests(yaml.safe_load((BUILD / "k8s_audit_rules.yaml").read_text()))
    plugins = rendered_plugins()
    body = EVENT_LIST.read_bytes()
    expected = len(json.loads(body)["items"])
    entry = plugins["k8saudit"]
    params, _ = loopback_params(entry["open_params"])
    k8saudit_init = {**entry["init_config"], "useAsync": use_async}
    json_init = json.dumps({**plugins["json"]["init_config"], "useAsync": use_async})
    with (
        open_k8saudit(k8saudit, k8saudit_init, params) as listener,
        json_plugin.initialized(json_init) as json_state,
    ):
        if listener.post(urlsplit(params).path, body).status != 200:
            raise RuntimeError("k8saudit refused the EventList")
        events = listener.read_events(expected)
        if len(events) != expected:
            raise RuntimeError(f"k8saudit delivered {len(events)} of {expected} events")
        states = {k8saudit.name: listener.state, json_plugin.name: json_state}
        calls = [(states[owner(f, k8saudit, json_plugin).name], [f]) for f in fields]
        done = failed = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            event = events[done % len(events)]
            for state, request in calls:
                try:
                    state.extract(event, request, SOURCE)
                except PluginError:
                    failed += 1  # Falco takes a failed extraction as "no value"
            done += 1
        elapsed = time.perf_counter() - start
    return {"events": done, "seconds": elapsed, "fields": len(fields), "failed": failed}


def run_side(use_async: bool, seconds: float) -> dict[str, Any]:
    """``side`` in a fresh interpreter, so each Go runtime sees one useAsync only."""
    flag = "true" if use_async else "false"
    result = subprocess.run(
        [sys.executable, __file__, "--side", flag, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--side"]:
        print(json.dumps(side(sys.argv[2] == "true", float(sys.argv[3]))))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    print(f"CPUs this process may run on: {len(os.sched_getaffinity(0))}; {EVENT_LIST.name}")
    rates: dict[bool, float] = {}
    for use_async in (False, True):
        result = run_side(use_async, seconds)
        rates[use_async] = result["events"] / result["seconds"]
        print(
            f"useAsync {str(use_async).lower():5s} {rates[use_async]:10.1f} events/s"
            f"  ({result['events']} events, {result['fields']} fields each,"
            f" {result['failed']} failed extractions, {result['seconds']:.1f} s)"
        )
    print(f"ratio useAsync true / false: {rates[True] / rates[False]:.4f}")


if __name__ == "__main__":
    main()
