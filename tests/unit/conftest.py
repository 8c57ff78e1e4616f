"""Shared fixtures: a charm root with stand-in plugin files and a simulated falco container."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ops
import pytest
import yaml
from kube_api import FakeApiServer, serve
from ops import testing

from charm import FalcoK8sCharm
from constants import FALCO_BIN, FALCO_CONFIG, FALCO_STAGING_DIR

# A few real-shaped stock rules: the charm only copies this file, Falco (simulated) reads it.
STOCK_RULES = """\
- required_engine_version: 15
- list: allowed_k8s_users
  items: ["minikube", "kubelet", "kube-proxy"]
- macro: kcreate
  condition: ka.verb=create
- rule: Disallowed K8s User
  desc: Detect any k8s operation by users outside of an allowed set of users.
  condition: kevt and non_system_user and not ka.user.name in (allowed_k8s_users)
  output: K8s Operation performed by user not in allowed list of users
  priority: WARNING
  source: k8s_audit
  tags: [k8s]
"""

LOADED_RULES = [
    ("Disallowed K8s User", "Warning", ["k8s"]),
    ("Create Privileged Pod", "Warning", ["k8s", "mitre_privilege_escalation"]),
    ("Attach/Exec Pod", "Notice", ["k8s", "mitre_execution"]),
    ("K8s Secret Get Successfully", "Error", ["k8s"]),
    ("Create HostNetwork Pod", "Warning", ["k8s", "mitre_lateral_movement"]),
]


def falco_list_json(enabled: bool = True) -> str:
    """What ``falco -L -o json_output=true`` prints: one JSON document on one line."""
    rules = [
        {
            "info": {
                "name": name,
                "condition": "kevt and kcreate",
                "priority": priority,
                "output": "output text",
                "description": "desc",
                "enabled": enabled,
                "source": "k8s_audit",
                "tags": tags,
            },
            "details": {"plugins": ["k8saudit", "json"], "macros": ["kcreate"]},
        }
        for name, priority, tags in LOADED_RULES
    ]
    doc = {"required_engine_version": "0.x", "rules": rules, "macros": [], "lists": []}
    return json.dumps(doc)


ACTIVE = testing.ActiveStatus("audit webhook at http://10.152.183.77:9765/k8s-audit")

DRY_RUN_PREFIX = (FALCO_BIN, "-c", f"{FALCO_STAGING_DIR}/falco.yaml")
LIST_PREFIX = (FALCO_BIN, "-c", FALCO_CONFIG, "--disable-source", "syscall", "-L")


@pytest.fixture(autouse=True)
def kube_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    """A fake Kubernetes API on 127.0.0.1 that the charm's lightkube client reaches."""
    api = FakeApiServer()
    with serve(api) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "clusters": [{"name": "k8s", "cluster": {"server": url}}],
                    "users": [{"name": "charm", "user": {"token": "service-account-token"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "k8s", "user": "charm"}}],
                    "current-context": "c",
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        yield api


@pytest.fixture
def charm_root(tmp_path: Path) -> Path:
    """A charm directory as charmcraft packs it, with small stand-ins for the plugin binaries."""
    root = tmp_path / "charm"
    plugins = root / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "libk8saudit.so").write_bytes(b"\x7fELF k8saudit 0.18.0 stand-in")
    (plugins / "libjson.so").write_bytes(b"\x7fELF json 0.7.4 stand-in")
    (plugins / "k8s_audit_rules.yaml").write_text(STOCK_RULES)
    return root


@pytest.fixture
def ctx(charm_root: Path) -> testing.Context[FalcoK8sCharm]:
    return testing.Context(FalcoK8sCharm, charm_root=charm_root)


@pytest.fixture
def falco_fs(tmp_path: Path) -> Path:
    """The falco container's filesystem, kept across runs so a test can chain hooks."""
    root = tmp_path / "falco-fs"
    for sub in ("etc-falco", "usr-share-falco", "var-log"):
        (root / sub).mkdir(parents=True)
    return root


def falco_container(
    fs: Path,
    *,
    dry_run: testing.Exec | None = None,
    listing: testing.Exec | None = None,
    **kwargs: Any,
) -> testing.Container:
    """The falco container with its filesystem mounted and Falco's answers simulated."""
    execs = {
        dry_run or testing.Exec(DRY_RUN_PREFIX, stdout="Falco initialized\n"),
        listing or testing.Exec(LIST_PREFIX, stdout=falco_list_json() + "\n"),
        testing.Exec(["mv"]),
    }
    mounts = {
        "etc": testing.Mount(location="/etc/falco", source=fs / "etc-falco"),
        "plugins": testing.Mount(location="/usr/share/falco", source=fs / "usr-share-falco"),
        "log": testing.Mount(location="/var/log", source=fs / "var-log"),
    }
    kwargs.setdefault("can_connect", True)
    return testing.Container("falco", mounts=mounts, execs=execs, **kwargs)


class Calls:
    """Counts the Pebble writes the charm makes, by spying on (not replacing) ops.Container."""

    def __init__(self) -> None:
        self.pushed: list[str] = []
        self.restarted: list[str] = []
        self.started: list[str] = []
        self.signals: list[tuple[str, tuple[str, ...]]] = []

    def reset(self) -> None:
        self.__init__()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    seen = Calls()
    push, restart, start, send_signal = (
        ops.Container.push,
        ops.Container.restart,
        ops.Container.start,
        ops.Container.send_signal,
    )

    def spy_push(self: ops.Container, path: str, *args: Any, **kwargs: Any) -> None:
        seen.pushed.append(f"{self.name}:{path}")
        push(self, path, *args, **kwargs)

    def spy_restart(self: ops.Container, *names: str) -> None:
        seen.restarted.extend(f"{self.name}:{n}" for n in names)
        restart(self, *names)

    def spy_start(self: ops.Container, *names: str) -> None:
        seen.started.extend(f"{self.name}:{n}" for n in names)
        start(self, *names)

    def spy_signal(self: ops.Container, sig: str, *names: str) -> None:
        seen.signals.append((sig, names))
        send_signal(self, sig, *names)

    monkeypatch.setattr(ops.Container, "push", spy_push)
    monkeypatch.setattr(ops.Container, "restart", spy_restart)
    monkeypatch.setattr(ops.Container, "start", spy_start)
    monkeypatch.setattr(ops.Container, "send_signal", spy_signal)
    return seen
