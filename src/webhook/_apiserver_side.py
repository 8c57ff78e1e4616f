"""What the kube-apiserver needs to send audit events to Falco, rendered as plain text.

Pure functions only (no ops, no lightkube): the charm, its actions and the cluster adapter share
them, and the tests exercise them without a cluster. Every document is built as a dict and
serialised with ``yaml.safe_dump`` so that no value can break the YAML structure.
"""

import base64
import ipaddress
import shlex
from dataclasses import dataclass
from typing import Literal

import yaml

from constants import K8SAUDIT_PATH, WEBHOOK_PORT

# The audit policy is in the charm's ConfigMap; the webhook file, which holds the token, in its
# Secret of the same name. The kubectl one-liners below read them back.
WEBHOOK_CONFIG_KEY = "webhook-config.yaml"
AUDIT_POLICY_KEY = "audit-policy.yaml"

# Where the files go on a kubeadm-style control-plane node. They are only defaults: the operator
# may keep them anywhere the kube-apiserver (or its static pod) can read.
APISERVER_CONFIG_DIR = "/etc/kubernetes/falco"
APISERVER_WEBHOOK_CONFIG = f"{APISERVER_CONFIG_DIR}/webhook-config.yaml"
APISERVER_AUDIT_POLICY = f"{APISERVER_CONFIG_DIR}/audit-policy.yaml"

# MicroK8s reads one flag per line from its args file and keeps side files next to it.
MICROK8S_ARGS_DIR = "/var/snap/microk8s/current/args"
MICROK8S_APISERVER_ARGS = f"{MICROK8S_ARGS_DIR}/kube-apiserver"
MICROK8S_WEBHOOK_CONFIG = f"{MICROK8S_ARGS_DIR}/falco-webhook-config.yaml"
MICROK8S_AUDIT_POLICY = f"{MICROK8S_ARGS_DIR}/falco-audit-policy.yaml"
MICROK8S_RESTART = "sudo snap restart microk8s.daemon-kubelite"

# Charmed Kubernetes: kubernetes-control-plane writes its options audit-webhook-config and
# audit-policy to files of its own and passes them as --audit-webhook-config-file and
# --audit-policy-file; its api-extra-args passes space-separated key=value pairs as flags.
CHARMED_KUBERNETES_APP = "kubernetes-control-plane"

# Batch sizing. The k8saudit plugin refuses a webhook request body larger than its
# webhookMaxBatchSize (12 MiB by default) and drops a single event larger than its maxEventSize
# (256 KiB by default). The apiserver's truncating backend splits a batch whose serialised size
# exceeds truncate-max-batch-size (the size may overshoot by a few hundred bytes), so 10 MiB
# keeps 2 MiB of headroom under the plugin's limit. An event above truncate-max-event-size first
# loses its request/response bodies and keeps its metadata; 240 KiB stays below the plugin's
# 256 KiB with margin for re-encoding, so an oversized event reaches Falco without bodies rather
# than not at all. Batches hold at most BATCH_MAX_EVENTS events before the byte limit splits them.
BATCH_MAX_EVENTS = 400
BATCH_MAX_WAIT = "5s"  # the apiserver's 30 s default would delay alerts on a quiet cluster
TRUNCATE_MAX_BATCH_BYTES = 10 * 1024 * 1024
TRUNCATE_MAX_EVENT_BYTES = 240 * 1024
# A batch the webhook could not deliver is tried 5 times, the waits growing from the initial
# backoff by 1.5x with up to 20 % jitter: the last try comes 8.125-9.75 initial backoffs after
# the first, and a listener outage longer than that loses the batch (the apiserver logs it).
# The apiserver's 10 s default survives outages of about 81 s (measured 85-88 s); 20 s doubles
# that (measured 171-178 s), enough for Falco's pod to be rescheduled, at the cost of a slower
# first retry after a blip and of holding the undelivered events twice as long during an outage
# (docs/reference/audit-webhook-delivery.md; benchmarks/webhook_outage_window.py measures it).
INITIAL_BACKOFF = "20s"

_KUBECONFIG_NAME = "falco"
# Where the apiserver reaches a NodePort Service: its own node's loopback (see webhook_server_url).
NODE_LOOPBACK = "127.0.0.1"
NODE_PORT_RANGE = range(30000, 32768)  # the kube-apiserver's default --service-node-port-range


@dataclass(frozen=True)
class WebhookAddress:
    """Where the kube-apiserver reaches the webhook, as read back from the live Service.

    Attributes:
        service_type: The Service's ``spec.type``.
        cluster_ip: The Service's allocated (or fixed) cluster IP.
        node_port: The allocated node port of the webhook port, for a NodePort Service only.
    """

    service_type: str
    cluster_ip: str
    node_port: int | None = None

    @property
    def url(self) -> str:
        """The webhook URL for this address."""
        return webhook_server_url(self.service_type, self.cluster_ip, self.node_port)

    @property
    def reachability_note(self) -> str:
        """What the apiserver's side needs for this address, when it is not a given."""
        if self.service_type == "NodePort":
            # nftables and ipvs modes do not answer node ports on 127.0.0.1.
            return "NodePort needs kube-proxy iptables mode"
        return ""


@dataclass(frozen=True)
class WebhookServiceSpec:
    """What the operator asked of the webhook Service.

    Attributes:
        service_type: ``ClusterIP`` (reached by the apiserver through kube-proxy) or ``NodePort``.
        node_port: A fixed node port, only for ``NodePort``; allocated by Kubernetes when unset.
        cluster_ip: A fixed cluster IP, so that the apiserver's file survives a redeploy.
    """

    service_type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    node_port: int | None = None
    cluster_ip: str | None = None

    def __post_init__(self) -> None:
        """Reject combinations the API server would refuse, with the option names in the message.

        Raises:
            ValueError: an invalid service type, node port or cluster IP.
        """
        if self.service_type not in ("ClusterIP", "NodePort"):
            raise ValueError(
                f"service_type must be ClusterIP or NodePort, not {self.service_type!r}"
            )
        if self.node_port is not None:
            if self.service_type != "NodePort":
                raise ValueError("node_port can only be set with webhook_service_type NodePort")
            if self.node_port not in NODE_PORT_RANGE:
                raise ValueError(f"node_port {self.node_port} is outside 30000-32767")
        if self.cluster_ip is not None:
            try:
                ip = ipaddress.ip_address(self.cluster_ip)
            except ValueError:
                raise ValueError(f"cluster_ip {self.cluster_ip!r} is not an IP address") from None
            if problem := _not_a_service_address(ip):
                raise ValueError(f"cluster_ip {self.cluster_ip!r} is {problem}")


def _not_a_service_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why ``ip`` can be no Service's cluster IP, or "" (the API then checks its range)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return "scoped: a Service takes a plain address"
    kinds = {
        "an unspecified": ip.is_unspecified,
        "a loopback": ip.is_loopback,
        "a link-local": ip.is_link_local,
        "a multicast": ip.is_multicast,
    }
    kind = next((name for name, matches in kinds.items() if matches), "")
    return f"{kind} address, never a Service's" if kind else ""


class InvalidCidrError(ValueError):
    """An ``allowed_cidrs`` entry is not an IP network."""


def open_to_everyone(cidrs: tuple[str, ...]) -> list[str]:
    """The networks among ``cidrs`` that hold every address of their family (``0.0.0.0/0``)."""
    return [cidr for cidr in cidrs if cidr.endswith("/0")]


def parse_allowed_cidrs(text: str) -> tuple[str, ...]:
    """Parse the comma-separated ``allowed_cidrs`` option into canonical, de-duplicated networks.

    Host bits are accepted and cleared (``10.1.2.3/24`` becomes ``10.1.2.0/24``) and a bare
    address becomes a single-host network, so operators can paste node addresses as they are.

    Raises:
        InvalidCidrError: naming the first entry that is not an IPv4 or IPv6 network.
    """
    networks: dict[str, None] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        if "%" in entry:
            # Python keeps or silently drops the zone; Kubernetes refuses it.
            raise InvalidCidrError(f"allowed_cidrs: {entry!r} is scoped: give a plain CIDR")
        try:
            networks[str(ipaddress.ip_network(entry, strict=False))] = None
        except ValueError as exc:
            raise InvalidCidrError(f"allowed_cidrs: {entry!r} is not a CIDR ({exc})") from exc
    return tuple(networks)


def webhook_resource_name(app: str) -> str:
    """Name shared by the charm's Service, ConfigMap and NetworkPolicy for the webhook."""
    return f"{app}-audit-webhook"


def webhook_server_url(service_type: str, cluster_ip: str, node_port: int | None) -> str:
    """The URL the kube-apiserver posts audit batches to: always https, as the token needs it.

    The apiserver does not use cluster DNS, so the host is always an IP address. A NodePort
    Service is reached on the loopback address of the node the apiserver runs on (this needs
    kube-proxy's localhost node ports, on by default in iptables mode as in MicroK8s); any other
    type through its cluster IP, in brackets when it is IPv6.

    Raises:
        ValueError: the cluster IP is not an IP address, or a NodePort Service has no node port.
    """
    if service_type == "NodePort":
        if node_port is None:
            raise ValueError("a NodePort Service needs a node port")
        host = NODE_LOOPBACK
        port = node_port
    else:
        ip = ipaddress.ip_address(cluster_ip)
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        port = WEBHOOK_PORT
    return f"https://{host}:{port}{K8SAUDIT_PATH}"


def webhook_kubeconfig(address: WebhookAddress, ca_cert: str, token: str) -> str:
    """The kubeconfig-format file named by ``--audit-webhook-config-file``, for a live Service.

    The apiserver verifies the intake's certificate against ``ca_cert`` (PEM) and sends
    ``token`` as ``Authorization: Bearer``; client-go sends a kubeconfig's credentials to an
    https server only, which is why the webhook is always https.
    """
    cluster = {
        "server": address.url,
        "certificate-authority-data": base64.b64encode(ca_cert.encode()).decode(),
    }
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": _KUBECONFIG_NAME, "cluster": cluster}],
        "users": [{"name": _KUBECONFIG_NAME, "user": {"token": token}}],
        "contexts": [
            {
                "name": _KUBECONFIG_NAME,
                "context": {"cluster": _KUBECONFIG_NAME, "user": _KUBECONFIG_NAME},
            }
        ],
        "current-context": _KUBECONFIG_NAME,
    }
    return yaml.safe_dump(document, sort_keys=False)


def apiserver_flags(
    webhook_config_path: str = APISERVER_WEBHOOK_CONFIG,
    audit_policy_path: str = APISERVER_AUDIT_POLICY,
) -> list[str]:
    """The kube-apiserver flags that enable the webhook audit backend with the two files."""
    return [
        f"--audit-policy-file={audit_policy_path}",
        f"--audit-webhook-config-file={webhook_config_path}",
        *batching_flags(),
    ]


def batching_flags() -> list[str]:
    """How the webhook backend batches, truncates and retries: the flags beside the two files."""
    return [
        "--audit-webhook-mode=batch",
        f"--audit-webhook-batch-max-size={BATCH_MAX_EVENTS}",
        f"--audit-webhook-batch-max-wait={BATCH_MAX_WAIT}",
        "--audit-webhook-truncate-enabled=true",
        f"--audit-webhook-truncate-max-batch-size={TRUNCATE_MAX_BATCH_BYTES}",
        f"--audit-webhook-truncate-max-event-size={TRUNCATE_MAX_EVENT_BYTES}",
        f"--audit-webhook-initial-backoff={INITIAL_BACKOFF}",
    ]


# Where each file handed to the admin lives in the cluster: the webhook file, which holds the
# token, in the Secret (base64, as Kubernetes keeps a Secret's data); the policy in the ConfigMap.
_STORED_IN = {WEBHOOK_CONFIG_KEY: "secret", AUDIT_POLICY_KEY: "configmap"}


def _cluster_extract(kubectl: str, namespace: str, app: str, key: str) -> str:
    """Shell command printing one file kept in the charm's Secret or ConfigMap to stdout."""
    jsonpath = "{.data." + key.replace(".", "\\.") + "}"
    kind = _STORED_IN[key]
    command = shlex.join(
        [
            *kubectl.split(),
            "-n",
            namespace,
            "get",
            kind,
            webhook_resource_name(app),
            "-o",
            f"jsonpath={jsonpath}",
        ]
    )
    return f"{command} | base64 -d" if kind == "secret" else command


def kubectl_commands(namespace: str, app: str) -> str:
    """Commands saving both files to the current directory, one per line."""
    return "\n".join(
        f"{_cluster_extract('kubectl', namespace, app, key)} > {key}"
        for key in (WEBHOOK_CONFIG_KEY, AUDIT_POLICY_KEY)
    )


@dataclass(frozen=True)
class SnapControlPlane:
    """Where a snap's kube-apiserver reads its flags (one per line) and files, and its restart."""

    kubectl: str
    args_file: str
    webhook_config: str
    audit_policy: str
    restart: str
    ready: str
    """Returns once the apiserver answers again, so that the next command reaches it."""


MICROK8S = SnapControlPlane(
    kubectl="microk8s kubectl",
    args_file=MICROK8S_APISERVER_ARGS,
    webhook_config=MICROK8S_WEBHOOK_CONFIG,
    audit_policy=MICROK8S_AUDIT_POLICY,
    restart=MICROK8S_RESTART,
    ready="microk8s status --wait-ready >/dev/null",
)
# Canonical Kubernetes (the k8s snap) reads the same layout under its SNAP_COMMON; its own docs
# keep audit files in /var/snap/k8s/common/etc. The k8s charm sets apiserver flags only when a
# node joins, and keeps the flags it did not set when it rewrites this file.
CANONICAL_K8S = SnapControlPlane(
    kubectl="sudo k8s kubectl",
    args_file="/var/snap/k8s/common/args/kube-apiserver",
    webhook_config="/var/snap/k8s/common/etc/falco-webhook-config.yaml",
    audit_policy="/var/snap/k8s/common/etc/falco-audit-policy.yaml",
    restart="sudo systemctl restart snap.k8s.kube-apiserver",
    ready="sudo k8s status --wait-ready >/dev/null",
)


def snap_control_plane_script(snap: SnapControlPlane, namespace: str, app: str) -> str:
    """A script to run on each control-plane node of a snap cluster to turn auditing to Falco on.

    It stops at the first failure, before the apiserver restarts on a file it could not write.
    It is safe to run again after the webhook address or the policy changed: earlier audit
    flags are removed from the args file before the current ones are appended. The webhook
    file holds the token: it is made readable by root only before anything is written to it.
    """
    files = ((WEBHOOK_CONFIG_KEY, snap.webhook_config), (AUDIT_POLICY_KEY, snap.audit_policy))
    directories = sorted({path.rsplit("/", 1)[0] for _, path in files})
    copies = [
        f"{_cluster_extract(snap.kubectl, namespace, app, key)}"
        f" | sudo tee {shlex.quote(path)} >/dev/null"
        for key, path in files
    ]
    args_file = shlex.quote(snap.args_file)
    return "\n".join(
        [
            "set -euo pipefail",
            shlex.join(["sudo", "mkdir", "-p", *directories]),
            shlex.join(["sudo", "install", "-m", "600", "/dev/null", snap.webhook_config]),
            *copies,
            f"sudo sed -i '/^--audit-\\(webhook\\|policy\\)-/d' {args_file}",
            f"sudo tee -a {args_file} >/dev/null <<'EOF'",
            *apiserver_flags(snap.webhook_config, snap.audit_policy),
            "EOF",
            snap.restart,
            snap.ready,
        ]
    )


# awk program printing every api-extra-args entry but earlier audit backend flags.
_OTHER_EXTRA_ARGS = (
    '{ for (i = 1; i <= NF; i++) if ($i !~ /^(--)?audit-(webhook|policy)-/) printf "%s ", $i }'
)


def charmed_kubernetes_command(
    webhook_config: str, audit_policy: str, app: str = CHARMED_KUBERNETES_APP
) -> str:
    """One ``juju config`` command pointing Charmed Kubernetes' apiservers at Falco.

    The control-plane charm writes the two files and restarts kube-apiserver itself. The
    operator's other ``api-extra-args`` stay: earlier audit flags give way to the current
    ones, so it is safe to run again.
    """
    files = shlex.join(
        [
            "juju",
            "config",
            app,
            f"audit-webhook-config={webhook_config}",
            f"audit-policy={audit_policy}",
        ]
    )
    current = shlex.join(["juju", "config", app, "api-extra-args"])
    others = f"$({current} | awk {shlex.quote(_OTHER_EXTRA_ARGS)})"
    ours = " ".join(flag.removeprefix("--") for flag in batching_flags())
    return f'{files} "api-extra-args={others}{ours}"'


def webhook_action_result(
    namespace: str, app: str, webhook_config: str, audit_policy: str
) -> dict[str, str]:
    """Everything an operator needs to point a kube-apiserver at Falco, as action results.

    Keys use only lowercase letters and hyphens, as Juju requires of action result keys.
    """
    return {
        "webhook-config": webhook_config,
        "audit-policy": audit_policy,
        "apiserver-flags": "\n".join(apiserver_flags()),
        "microk8s": snap_control_plane_script(MICROK8S, namespace, app),
        "canonical-k8s": snap_control_plane_script(CANONICAL_K8S, namespace, app),
        "charmed-kubernetes": charmed_kubernetes_command(webhook_config, audit_policy),
        "kubectl": kubectl_commands(namespace, app),
    }
