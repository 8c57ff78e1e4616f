"""The shell text get-webhook-config hands out, run through bash as an operator would run it.

Each test runs the exact text the action returns, with stand-ins for juju, microk8s, k8s,
snap and systemctl on PATH (tests/unit/fakes/fake_cli.py), and checks byte for byte what
they received: multi-line YAML in one command line is where shell quoting goes wrong.
"""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest
from operator_shell import OperatorShell
from tls_ca import TestCa

from webhook._apiserver_side import (
    AUDIT_POLICY_KEY,
    CANONICAL_K8S,
    CHARMED_KUBERNETES_APP,
    MICROK8S,
    WEBHOOK_CONFIG_KEY,
    SnapControlPlane,
    WebhookAddress,
    apiserver_flags,
    batching_flags,
    charmed_kubernetes_command,
    snap_control_plane_script,
    webhook_kubeconfig,
    webhook_resource_name,
)
from webhook._audit_policy import resolve_audit_policy

APP = CHARMED_KUBERNETES_APP
OURS = [flag.removeprefix("--") for flag in batching_flags()]
# An operator's own policy may hold anything YAML allows in a comment or a string.
AWKWARD_POLICY = resolve_audit_policy("").replace(
    "rules:", '# don\'t $(touch pwned) `id` \\n "quoted" 100% ${HOME}\nrules:', 1
)


@pytest.fixture
def shell(tmp_path: Path) -> OperatorShell:
    return OperatorShell(tmp_path)


@pytest.fixture
def kubeconfig() -> str:
    """A webhook file as the action hands it out: TLS, and the token."""
    return webhook_kubeconfig(
        WebhookAddress("ClusterIP", "10.152.183.77"), TestCa().pem, "the-webhook-token"
    )


def extra_args(shell: OperatorShell) -> list[str]:
    return shell.state["config"][APP]["api-extra-args"].split()


def test_charmed_kubernetes_command_sets_both_files_byte_for_byte(
    shell: OperatorShell, kubeconfig: str
):
    shell.run(charmed_kubernetes_command(kubeconfig, AWKWARD_POLICY))

    reads, sets = shell.calls("juju")
    assert reads == ["juju", "config", APP, "api-extra-args"]
    assert sets[:5] == [
        "juju",
        "config",
        APP,
        f"audit-webhook-config={kubeconfig}",
        f"audit-policy={AWKWARD_POLICY}",
    ]
    assert sets[5:] == [f"api-extra-args={' '.join(OURS)}"]
    assert not (shell.root / "pwned").exists()


def test_charmed_kubernetes_command_keeps_the_operators_other_extra_args(
    shell: OperatorShell, kubeconfig: str
):
    mine = "runtime-config=batch/v2alpha1=true  profiling=true"
    earlier = "audit-webhook-batch-max-size=1 --audit-policy-file=/x audit-log-maxage=7"
    shell.state = {"config": {APP: {"api-extra-args": f"{mine} {earlier}"}}}

    shell.run(charmed_kubernetes_command(kubeconfig, AWKWARD_POLICY))

    assert extra_args(shell) == [*mine.split(), "audit-log-maxage=7", *OURS]


def test_charmed_kubernetes_command_run_twice_changes_nothing_more(
    shell: OperatorShell, kubeconfig: str
):
    shell.state = {"config": {APP: {"api-extra-args": "profiling=true"}}}
    command = charmed_kubernetes_command(kubeconfig, AWKWARD_POLICY)

    shell.run(command)
    once = shell.state
    shell.run(command)

    assert shell.state == once
    assert extra_args(shell) == ["profiling=true", *OURS]


def as_called(command: str) -> list[str]:
    """The argv a fake records for ``command``: sudo runs the rest, redirections are not argv."""
    words = shlex.split(command.split(">", maxsplit=1)[0])
    return words[1:] if words[0] == "sudo" else words


def moved(root: Path, text: str) -> str:
    """The script with the node's /var/snap under ``root``: the fakes write real files there."""
    assert "/var/snap/" in text
    return text.replace("/var/snap/", f"{root}/var/snap/")


def node(shell: OperatorShell, snap: SnapControlPlane, args: str, kubeconfig: str) -> Path:
    """A control-plane node: its args file holding ``args``, the charm's objects in the API."""
    args_file = Path(moved(shell.root, snap.args_file))
    args_file.parent.mkdir(parents=True)
    args_file.write_text(args)
    name = webhook_resource_name("falco-k8s")
    shell.state = {
        "configmaps": {name: {AUDIT_POLICY_KEY: AWKWARD_POLICY}},
        "secrets": {name: {WEBHOOK_CONFIG_KEY: kubeconfig}},
    }
    return args_file


@pytest.mark.parametrize("snap", [MICROK8S, CANONICAL_K8S], ids=["microk8s", "canonical-k8s"])
def test_snap_script_writes_both_files_and_the_flags_then_restarts(
    shell: OperatorShell, snap: SnapControlPlane, kubeconfig: str
):
    others = '--secure-port=16443\n--audit-log-path="/var/log/audit.log"\n'
    earlier = "--audit-webhook-config-file=/old.yaml\n--audit-webhook-batch-max-size=1\n"
    args_file = node(shell, snap, others + earlier, kubeconfig)
    script = moved(shell.root, snap_control_plane_script(snap, "falco", "falco-k8s"))

    shell.run(script)
    shell.run(script)  # safe to run again

    webhook_file = Path(moved(shell.root, snap.webhook_config))
    assert webhook_file.read_text() == kubeconfig
    assert stat.S_IMODE(webhook_file.stat().st_mode) == 0o600  # it holds the token
    assert Path(moved(shell.root, snap.audit_policy)).read_text() == AWKWARD_POLICY
    flags = apiserver_flags(snap.webhook_config, snap.audit_policy)
    assert args_file.read_text() == moved(shell.root, others + "\n".join(flags) + "\n")
    not_kubectl = [call for call in shell.calls() if call[1:2] != ["kubectl"]]
    assert not_kubectl == [as_called(snap.restart), as_called(snap.ready)] * 2


@pytest.mark.parametrize("snap", [MICROK8S, CANONICAL_K8S], ids=["microk8s", "canonical-k8s"])
def test_snap_script_stops_before_the_restart_when_the_files_cannot_be_read(
    shell: OperatorShell, snap: SnapControlPlane, kubeconfig: str
):
    args_file = node(shell, snap, "--secure-port=16443\n", kubeconfig)
    shell.state = {"configmaps": {}, "secrets": {}}  # the objects are not there: kubectl fails
    script = moved(shell.root, snap_control_plane_script(snap, "falco", "falco-k8s"))

    result = shell.run(script, check=False)

    assert result.returncode != 0
    assert args_file.read_text() == "--secure-port=16443\n"
    assert not [call for call in shell.calls() if call[0] in ("snap", "systemctl")]
