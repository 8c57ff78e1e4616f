"""The README's promises: short, its test command is CI's, its first-alert commands work.

The first-alert commands that touch a cluster run in the integration suite on MicroK8s
(tests/integration/test_apiserver.py); here the pipes run through a real bash and jq against
stand-in CLIs, fed the action results the charm really returns.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from charm_pod import falco_container, peers, pod
from operator_shell import OperatorShell
from ops import testing
from readme import CHARMED_KUBERNETES, MICROK8S, README, ROOT, ci_command, first_alert

from webhook._apiserver_side import MICROK8S_APISERVER_ARGS, apiserver_flags

UNIT = "falco-k8s/0"
DEPLOY = "juju deploy falco-k8s --channel=latest/edge --trust"
README_MAX_LINES = 150


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def test_the_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = ci_command()

    start = ci.index(readme[0])
    assert ci[start:] == readme


def test_the_readme_deploys_from_the_channel_the_release_workflow_publishes_to():
    release = (ROOT / ".github" / "workflows" / "release.yaml").read_text()
    channel = shlex.split(DEPLOY)[3].removeprefix("--channel=")

    assert f'tools/release-charm "${{{{ matrix.path }}}}" {channel}' in release


@pytest.mark.parametrize("cluster", [MICROK8S, CHARMED_KUBERNETES])
def test_the_first_alert_takes_five_commands_from_deploy_to_the_alert(cluster: str):
    commands = first_alert(cluster)

    assert len(commands) <= 5
    assert commands[0] == DEPLOY
    assert commands[-1].startswith("juju ssh --container falco falco-k8s/0 grep ")
    assert "'Create Privileged Pod'" in commands[-1]


def test_the_two_clusters_differ_only_in_wiring_the_apiserver_and_in_kubectl():
    microk8s, charmed = first_alert(MICROK8S), first_alert(CHARMED_KUBERNETES)

    same = [0, 1, 4]
    assert [microk8s[i] for i in same] == [charmed[i] for i in same]
    assert microk8s[3] == f"microk8s {charmed[3]}"


@pytest.fixture
def action_results(ctx, falco_fs: Path) -> dict[str, str]:
    """What `juju run falco-k8s/0 get-webhook-config` returns from a deployed leader."""
    state = testing.State(
        containers=pod(falco_container(falco_fs)), relations={peers()}, leader=True
    )
    deployed = ctx.run(ctx.on.config_changed(), state)
    ctx.run(ctx.on.action("get-webhook-config"), deployed)
    assert ctx.action_results is not None
    return {key: str(value) for key, value in ctx.action_results.items()}


def test_the_charmed_kubernetes_line_configures_the_control_plane_in_its_own_model(
    tmp_path: Path, action_results: dict[str, str]
):
    shell = OperatorShell(tmp_path)
    shell.state = {"action_results": {UNIT: {"get-webhook-config": action_results}}}
    wire = first_alert(CHARMED_KUBERNETES)[2]

    shell.run(wire)

    run, read, configure = shell.calls_in_models("juju")
    assert run == (["juju", "run", UNIT, "get-webhook-config", "--format=json"], "")
    assert read == (["juju", "config", "kubernetes-control-plane", "api-extra-args"], "ck8s")
    argv, model = configure
    assert model == "ck8s"
    assert argv[:5] == [
        "juju",
        "config",
        "kubernetes-control-plane",
        f"audit-webhook-config={action_results['webhook-config']}",
        f"audit-policy={action_results['audit-policy']}",
    ]
    assert argv[5].split() == [
        "api-extra-args=" + flag.removeprefix("--") if i == 0 else flag.removeprefix("--")
        for i, flag in enumerate(apiserver_flags()[2:])
    ]


def test_the_microk8s_line_runs_the_node_script_as_root(
    tmp_path: Path, action_results: dict[str, str]
):
    shell = OperatorShell(tmp_path)
    node = tmp_path / "node"
    # The node's /var/snap moved under tmp_path: the script writes real files there.
    script = action_results["microk8s"].replace("/var/snap/", f"{node}/var/snap/")
    args_file = Path(f"{node}{MICROK8S_APISERVER_ARGS}")
    args_file.parent.mkdir(parents=True)
    args_file.write_text("--secure-port=16443\n")
    name = "falco-k8s-audit-webhook"
    shell.state = {
        "action_results": {UNIT: {"get-webhook-config": {**action_results, "microk8s": script}}},
        "configmaps": {name: {"audit-policy.yaml": action_results["audit-policy"]}},
        "secrets": {name: {"webhook-config.yaml": action_results["webhook-config"]}},
    }
    wire = first_alert(MICROK8S)[2]

    shell.run(wire)

    assert wire.endswith("| sudo bash")
    flags = args_file.read_text().splitlines()
    assert flags[0] == "--secure-port=16443"
    assert [flag.replace(str(node), "") for flag in flags[1:]] == apiserver_flags(
        "/var/snap/microk8s/current/args/falco-webhook-config.yaml",
        "/var/snap/microk8s/current/args/falco-audit-policy.yaml",
    )
    assert ["snap", "restart", "microk8s.daemon-kubelite"] in shell.calls("snap")
