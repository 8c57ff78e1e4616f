"""The simulated falco-k8s pod for Scenario tests: containers, Falco's answers, spies."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ops import testing

from constants import CHARM_RULES_FILE, FALCO_BIN, FALCO_CONFIG, FALCO_STAGING_DIR
from report import status_message

# The charm's own rules file, as the charm ships it.
CHARM_RULES_TEXT = (Path(__file__).resolve().parents[2] / CHARM_RULES_FILE).read_text()

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

# A valid custom rule, as an operator would write one.
CI_RULE = """\
- rule: Exec by CI
  desc: ci exec
  condition: ka.verb=create
  output: exec by %ka.user.name
  priority: NOTICE
  source: k8s_audit
  tags: [ci]
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


WEBHOOK_AT = "webhook https://10.152.183.77:9765/k8s-audit"
ACTIVE = testing.ActiveStatus(WEBHOOK_AT)


def active(*notes: str, alerts_to: str = "") -> testing.ActiveStatus:
    """The Active status of the usual pod: notes first, then what the unit does, as fits."""
    sinks = [f"alerts to {alerts_to}"] if alerts_to else []
    return testing.ActiveStatus(status_message([*notes, WEBHOOK_AT, *sinks]))


def peers(**kwargs: Any) -> testing.PeerRelation:
    """The peer relation Juju gives every unit: memory, and the webhook credentials' secret ID."""
    return testing.PeerRelation("falco-peers", **kwargs)


DRY_RUN_PREFIX = (FALCO_BIN, "-c", f"{FALCO_STAGING_DIR}/falco.yaml")
LIST_PREFIX = (FALCO_BIN, "-c", FALCO_CONFIG, "--disable-source", "syscall", "-L")


# Stand-in for the falco.yaml the upstream image ships: the syscall source and the container
# plugin, which cannot start in this pod. The charm must never take it for its own config.
IMAGE_FALCO_YAML = """\
engine:
  kind: modern_ebpf
load_plugins: [container]
rules_files: [/etc/falco/falco_rules.yaml]
"""


def new_falco_fs(root: Path) -> Path:
    """A fresh falco container's filesystem, as the image provides it."""
    for sub in ("etc-falco", "usr-share-falco", "alerts"):
        (root / sub).mkdir(parents=True)
    (root / "etc-falco" / "falco.yaml").write_text(IMAGE_FALCO_YAML)
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
    }
    mounts = {
        "etc": testing.Mount(location="/etc/falco", source=fs / "etc-falco"),
        "plugins": testing.Mount(location="/usr/share/falco", source=fs / "usr-share-falco"),
        # The alert-log storage: the same volume is mounted in the forwarder container.
        "alerts": testing.Mount(location="/var/lib/falco-alerts", source=fs / "alerts"),
    }
    kwargs.setdefault("can_connect", True)
    return testing.Container("falco", mounts=mounts, execs=execs, **kwargs)


# Mount name: (directory beside the falco container's filesystem, location in the container).
FORWARDER_MOUNTS = {
    "code": ("opt", "/opt/falco-forwarder"),
    "config": ("etc", "/etc/falco-forwarder"),
    "intake-code": ("intake-opt", "/opt/audit-intake"),
    "intake-config": ("intake-etc", "/etc/audit-intake"),
}


def forwarder_container(fs: Path, **kwargs: Any) -> testing.Container:
    """The forwarder container (the forwarder and the audit intake), its files kept across runs."""
    mounts = {
        name: testing.Mount(location=location, source=fs / sub)
        for name, (sub, location) in FORWARDER_MOUNTS.items()
    }
    kwargs.setdefault("can_connect", True)
    return testing.Container("forwarder", mounts=mounts, **kwargs)


def pod(falco: testing.Container, forwarder: testing.Container | None = None) -> set[Any]:
    """Both containers of the unit's pod, as Juju always has them.

    The forwarder's filesystem sits next to the falco container's mounted one.
    """
    if forwarder is None:
        falco_root = Path(falco.mounts["etc"].source).parent
        fs = falco_root.parent / f"{falco_root.name}-forwarder"
        for sub, _ in FORWARDER_MOUNTS.values():
            (fs / sub).mkdir(parents=True, exist_ok=True)
        forwarder = forwarder_container(fs)
    return {falco, forwarder}


def unit_state(
    fs: Path,
    model: str,
    *,
    leader: bool = True,
    relations: set[Any] | None = None,
    **config: Any,
) -> testing.State:
    """A unit in ``model`` with both containers on ``config``; ``relations``: its peers alone."""
    return testing.State(
        config=config,
        containers=pod(falco_container(fs)),
        relations={peers()} if relations is None else relations,
        leader=leader,
        model=testing.Model(name=model),
    )


def with_container(state: testing.State, container: testing.Container) -> testing.State:
    """``state`` with one container swapped, the other kept as it was."""
    others = {c for c in state.containers if c.name != container.name}
    return dataclasses.replace(state, containers={container, *others})


class Calls:
    """Counts the Pebble writes the charm makes, by spying on (not replacing) ops.Container."""

    def __init__(self) -> None:
        self.pushed: list[str] = []
        self.restarted: list[str] = []
        self.started: list[str] = []
        self.signals: list[tuple[str, tuple[str, ...]]] = []

    def reset(self) -> None:
        self.__init__()
