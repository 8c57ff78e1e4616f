"""The kube-apiserver side of the webhook: kubeconfig, flags, operator instructions, CIDRs."""

import base64
import re
import shlex
import subprocess

import pytest
import yaml

from webhook._apiserver_side import (
    AUDIT_POLICY_KEY,
    CANONICAL_K8S,
    MICROK8S,
    MICROK8S_APISERVER_ARGS,
    MICROK8S_AUDIT_POLICY,
    MICROK8S_RESTART,
    MICROK8S_WEBHOOK_CONFIG,
    TRUNCATE_MAX_BATCH_BYTES,
    TRUNCATE_MAX_EVENT_BYTES,
    WEBHOOK_CONFIG_KEY,
    InvalidCidrError,
    WebhookAddress,
    apiserver_flags,
    charmed_kubernetes_command,
    kubectl_commands,
    parse_allowed_cidrs,
    snap_control_plane_script,
    webhook_action_result,
    webhook_kubeconfig,
    webhook_resource_name,
    webhook_server_url,
)

# The k8saudit plugin's defaults the flags are sized against.
PLUGIN_MAX_BATCH_BYTES = 12 * 1024 * 1024
PLUGIN_MAX_EVENT_BYTES = 256 * 1024


CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
TOKEN = "the-webhook-token"


def kubeconfig_for(address: WebhookAddress) -> str:
    return webhook_kubeconfig(address, CA, TOKEN)


def server_of(kubeconfig: str) -> str:
    document = yaml.safe_load(kubeconfig)
    return document["clusters"][0]["cluster"]["server"]


def test_kubeconfig_structure():
    document = yaml.safe_load(kubeconfig_for(WebhookAddress("ClusterIP", "10.152.183.77", None)))

    assert document["apiVersion"] == "v1"
    assert document["kind"] == "Config"
    assert [c["name"] for c in document["clusters"]] == ["falco"]
    assert [u["name"] for u in document["users"]] == ["falco"]
    (context,) = document["contexts"]
    assert context == {"name": "falco", "context": {"cluster": "falco", "user": "falco"}}
    assert document["current-context"] == "falco"


@pytest.mark.parametrize(
    ("service_type", "cluster_ip", "node_port", "server"),
    [
        ("ClusterIP", "10.152.183.77", None, "https://10.152.183.77:9765/k8s-audit"),
        ("NodePort", "10.152.183.77", 30765, "https://127.0.0.1:30765/k8s-audit"),
        ("ClusterIP", "fd00:10:152::4d", None, "https://[fd00:10:152::4d]:9765/k8s-audit"),
        ("ClusterIP", "fd00:10:152:0:0::4d", None, "https://[fd00:10:152::4d]:9765/k8s-audit"),
        ("LoadBalancer", "10.152.183.9", 31000, "https://10.152.183.9:9765/k8s-audit"),
    ],
)
def test_server_url(service_type: str, cluster_ip: str, node_port: int | None, server: str):
    assert webhook_server_url(service_type, cluster_ip, node_port) == server
    kubeconfig = kubeconfig_for(WebhookAddress(service_type, cluster_ip, node_port))
    assert server_of(kubeconfig) == server


@pytest.mark.parametrize(
    ("service_type", "cluster_ip", "node_port"),
    [
        ("ClusterIP", "falco-audit-webhook.falco.svc", None),
        ("ClusterIP", "None", None),
        ("NodePort", "10.152.183.77", None),
    ],
)
def test_server_url_refuses_what_the_apiserver_cannot_reach(
    service_type: str, cluster_ip: str, node_port: int | None
):
    with pytest.raises(ValueError):  # noqa: PT011 - ipaddress' own message varies by version
        webhook_server_url(service_type, cluster_ip, node_port)


def test_address_renders_its_kubeconfig():
    address = WebhookAddress("NodePort", "10.152.183.77", 30765)

    assert address.url == "https://127.0.0.1:30765/k8s-audit"
    assert server_of(kubeconfig_for(address)) == address.url


def test_kubeconfig_survives_yaml_special_values():
    # An IPv6 literal with colons must stay one scalar, not turn into a mapping or a number.
    kubeconfig = kubeconfig_for(WebhookAddress("ClusterIP", "::1", None))
    assert server_of(kubeconfig) == "https://[::1]:9765/k8s-audit"


def flag_values(flags: list[str]) -> dict[str, str]:
    return dict(flag.removeprefix("--").split("=", 1) for flag in flags)


def test_apiserver_flags_defaults():
    values = flag_values(apiserver_flags())

    assert values["audit-webhook-config-file"] == "/etc/kubernetes/falco/webhook-config.yaml"
    assert values["audit-policy-file"] == "/etc/kubernetes/falco/audit-policy.yaml"
    assert values["audit-webhook-mode"] == "batch"
    assert values["audit-webhook-truncate-enabled"] == "true"
    assert int(values["audit-webhook-batch-max-size"]) > 0
    assert re.fullmatch(r"\d+s", values["audit-webhook-batch-max-wait"])
    assert values["audit-webhook-initial-backoff"] == "20s"


def test_apiserver_flags_fit_the_plugin_limits():
    values = flag_values(apiserver_flags())
    batch = int(values["audit-webhook-truncate-max-batch-size"])
    event = int(values["audit-webhook-truncate-max-event-size"])

    assert batch == TRUNCATE_MAX_BATCH_BYTES
    assert event == TRUNCATE_MAX_EVENT_BYTES
    # A batch may overshoot by a few hundred bytes: keep at least 1 MiB of headroom.
    assert batch + 1024 * 1024 <= PLUGIN_MAX_BATCH_BYTES
    assert event <= PLUGIN_MAX_EVENT_BYTES
    assert event < batch


def test_apiserver_flags_paths_are_parameters():
    values = flag_values(apiserver_flags("/srv/a.yaml", "/srv/b.yaml"))

    assert values["audit-webhook-config-file"] == "/srv/a.yaml"
    assert values["audit-policy-file"] == "/srv/b.yaml"


def test_kubectl_commands():
    lines = kubectl_commands("falco-model", "falco").splitlines()

    # The webhook file holds the token: it is in the Secret, base64 as Kubernetes keeps it.
    assert lines == [
        "kubectl -n falco-model get secret falco-audit-webhook"
        " -o 'jsonpath={.data.webhook-config\\.yaml}' | base64 -d > webhook-config.yaml",
        "kubectl -n falco-model get configmap falco-audit-webhook"
        " -o 'jsonpath={.data.audit-policy\\.yaml}' > audit-policy.yaml",
    ]


def test_microk8s_script():
    script = snap_control_plane_script(MICROK8S, "falco-model", "falco")
    lines = script.splitlines()

    assert lines[0] == "set -euo pipefail"
    copies = [line for line in lines if line.startswith("microk8s kubectl -n falco-model")]
    assert len(copies) == 2
    # The webhook file holds the token: it comes from the Secret (base64), private to root.
    assert copies[0].startswith("microk8s kubectl -n falco-model get secret falco-audit-webhook")
    assert "webhook-config\\.yaml" in copies[0]
    assert copies[0].endswith(f"| base64 -d | sudo tee {MICROK8S_WEBHOOK_CONFIG} >/dev/null")
    assert f"sudo install -m 600 /dev/null {MICROK8S_WEBHOOK_CONFIG}" in lines
    assert lines.index(f"sudo install -m 600 /dev/null {MICROK8S_WEBHOOK_CONFIG}") < lines.index(
        copies[0]
    )
    assert "audit-policy\\.yaml" in copies[1]
    assert copies[1].endswith(f"| sudo tee {MICROK8S_AUDIT_POLICY} >/dev/null")
    # Earlier audit flags are removed before the current ones are appended: safe to re-run.
    sed = next(i for i, line in enumerate(lines) if line.startswith("sudo sed -i"))
    assert lines[sed].endswith(MICROK8S_APISERVER_ARGS)
    assert lines[sed + 1] == f"sudo tee -a {MICROK8S_APISERVER_ARGS} >/dev/null <<'EOF'"
    end = lines.index("EOF")
    assert lines[sed + 2 : end] == apiserver_flags(MICROK8S_WEBHOOK_CONFIG, MICROK8S_AUDIT_POLICY)
    assert lines[end + 1 :] == [
        MICROK8S_RESTART,
        "microk8s status --wait-ready >/dev/null",
    ]
    assert MICROK8S_RESTART == "sudo snap restart microk8s.daemon-kubelite"
    assert MICROK8S_WEBHOOK_CONFIG.startswith("/var/snap/microk8s/current/args/")


def test_instructions_are_valid_shell():
    for script in (
        snap_control_plane_script(MICROK8S, "m", "a"),
        snap_control_plane_script(CANONICAL_K8S, "m", "a"),
        charmed_kubernetes_command("apiVersion: v1\n", "kind: Policy\n"),
        kubectl_commands("m", "a"),
    ):
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    words = shlex.split(kubectl_commands("m", "a").splitlines()[0])
    assert words[words.index("-o") + 1] == "jsonpath={.data.webhook-config\\.yaml}"


def test_microk8s_sed_removes_only_audit_backend_flags():
    script = snap_control_plane_script(MICROK8S, "m", "a")
    sed_line = next(line for line in script.splitlines() if line.startswith("sudo sed"))
    basic_regex = sed_line.split("'")[1].strip("/").removesuffix("/d")
    # Translate the GNU basic regex to Python's to check what it matches.
    pattern = re.compile(basic_regex.replace("\\(", "(").replace("\\)", ")").replace("\\|", "|"))

    assert pattern.match("--audit-webhook-config-file=/x")
    assert pattern.match("--audit-policy-file=/x")
    assert not pattern.match("--audit-log-path=/var/log/audit.log")
    assert not pattern.match("--authorization-mode=Node,RBAC")


def test_action_result_keys_and_values():
    result = webhook_action_result("falco-model", "falco", "KUBECONFIG", "POLICY")

    assert set(result) == {
        "webhook-config",
        "audit-policy",
        "apiserver-flags",
        "microk8s",
        "canonical-k8s",
        "charmed-kubernetes",
        "kubectl",
    }
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", key) for key in result)
    assert result["webhook-config"] == "KUBECONFIG"
    assert result["audit-policy"] == "POLICY"
    assert result["apiserver-flags"].splitlines() == apiserver_flags()
    assert result["microk8s"] == snap_control_plane_script(MICROK8S, "falco-model", "falco")
    assert result["canonical-k8s"] == snap_control_plane_script(
        CANONICAL_K8S, "falco-model", "falco"
    )
    assert result["charmed-kubernetes"] == charmed_kubernetes_command("KUBECONFIG", "POLICY")
    assert result["kubectl"] == kubectl_commands("falco-model", "falco")


def test_resource_name_and_keys():
    assert webhook_resource_name("falco") == "falco-audit-webhook"
    assert (WEBHOOK_CONFIG_KEY, AUDIT_POLICY_KEY) == ("webhook-config.yaml", "audit-policy.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        (" , ,", ()),
        ("10.0.0.0/8", ("10.0.0.0/8",)),
        ("10.1.2.3/24, 192.168.1.10", ("10.1.2.0/24", "192.168.1.10/32")),
        ("10.0.0.0/8,10.0.0.0/8", ("10.0.0.0/8",)),
        ("fd00::1/64,::1", ("fd00::/64", "::1/128")),
    ],
)
def test_parse_allowed_cidrs(text: str, expected: tuple[str, ...]):
    assert parse_allowed_cidrs(text) == expected


@pytest.mark.parametrize(
    "bad",
    ["10.0.0.0/33", "example.com", "10.0.0.0/8/1", "300.1.1.1", "fe80::1%eth0", "fe80::%eth0/64"],
)
def test_parse_allowed_cidrs_names_the_bad_entry(bad: str):
    with pytest.raises(InvalidCidrError, match=re.escape(repr(bad))) as excinfo:
        parse_allowed_cidrs(f"10.0.0.0/8, {bad}")
    assert isinstance(excinfo.value, ValueError)


def test_a_node_port_address_says_what_the_apiserver_side_needs():
    assert "iptables mode" in WebhookAddress("NodePort", "10.1.2.3", 30765).reachability_note
    assert WebhookAddress("ClusterIP", "10.1.2.3").reachability_note == ""


def test_the_kubeconfig_pins_the_ca_and_carries_the_token_client_go_sends_as_bearer():
    document = yaml.safe_load(kubeconfig_for(WebhookAddress("NodePort", "10.152.183.77", 30765)))

    cluster = document["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:30765/k8s-audit"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == CA
    assert document["users"] == [{"name": "falco", "user": {"token": TOKEN}}]
