"""A real kube-apiserver and etcd on 127.0.0.1, built by tools/install-kube-apiserver.

No kubelet, scheduler or controller-manager: pods stay Pending, which is enough for every object
the charm creates and for audit events. What the missing controllers would have done and a test
needs (a namespace's ``default`` service account) is done by `KubeApiServer.create_namespace`.

The apiserver serves https with a certificate from a test CA, authenticates static tokens
(`IDENTITIES`) and authorizes with RBAC only. Several apiservers can share one etcd, each under
its own key prefix, so a test can start one with its own audit flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from forwarder_helpers import free_port
from lightkube import ApiError, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)
from tls_ca import TestCa

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / "build" / "bin"
KUBE_APISERVER = BIN / "kube-apiserver"
ETCD = BIN / "etcd"

# The range MicroK8s allocates cluster IPs from (its default --service-cluster-ip-range), and an
# IPv6 one: a dual-stack cluster.
SERVICE_CIDR = "10.152.183.0/24"
SERVICE_CIDR_V6 = "fd00:10:152:183::/112"
START_SECONDS = 180.0  # two busy cores: a cold apiserver takes 5-40 s to become ready
STOP_SECONDS = 15.0

# Static-token identities. `juju trust APP --scope=cluster` replaces the rules of the Role and
# ClusterRole Juju made for the application's service account with full access
# (apiGroups/resources/verbs "*"); without trust the ClusterRole may only get/list namespaces
# and the Role in the model's namespace get/list/patch pods and services and create pods/exec
# (juju/juju caas/kubernetes/provider/application/trust.go, Juju 3.6).
ADMIN = "admin"  # system:masters: the harness's own hand
ALICE = "alice"  # bound to cluster-admin, not in the stock rules' allowed users: makes events
TRUSTED = "falco-k8s-trusted"
UNTRUSTED = "falco-k8s-untrusted"
NOBODY = "nobody"
IDENTITIES: dict[str, tuple[str, ...]] = {
    ADMIN: ("system:masters",),
    ALICE: (),
    TRUSTED: (),
    UNTRUSTED: (),
    NOBODY: (),
}
EVERYTHING = PolicyRule(apiGroups=["*"], resources=["*"], verbs=["*"])
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def writes(requests: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The requests among ``requests`` that change something."""
    return [(verb, resource) for verb, resource in requests if verb in WRITE_VERBS]


class HarnessError(Exception):
    """The real apiserver or etcd could not be started; the message says why and what to run."""


def binary(path: Path) -> Path:
    """``path`` if it was built, else a HarnessError naming the build step."""
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is missing: run tox, or tools/install-kube-apiserver")
    return path


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit: an audit webhook still retrying holds it."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(
    process: subprocess.Popen[bytes], log: Path, probe: Any, what: str, timeout: float
) -> None:
    """Poll ``probe`` until true; a dead process or the timeout raise with the log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise HarnessError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(httpx2.HTTPError):
            if probe():
                return
        if time.monotonic() > deadline:
            _stop(process)
            raise HarnessError(f"{what} not ready after {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(0.2)


@dataclass
class Etcd:
    """One etcd member on 127.0.0.1, for every apiserver of the session."""

    url: str
    process: subprocess.Popen[bytes]
    prefixes: int = 0

    def next_prefix(self) -> str:
        """A key prefix no other apiserver on this etcd uses."""
        self.prefixes += 1
        return f"/registry-{self.prefixes}"


@contextlib.contextmanager
def running_etcd(workdir: Path) -> Iterator[Etcd]:
    """Start etcd in ``workdir``; stop it after."""
    workdir.mkdir(parents=True, exist_ok=True)
    client, peer = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    log = workdir / "etcd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary(ETCD)),
                f"--data-dir={workdir / 'data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",  # a test cluster: speed over durability
                "--log-level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(
            process,
            log,
            lambda: httpx2.get(f"{client}/health", timeout=2).json().get("health") == "true",
            "etcd",
            START_SECONDS,
        )
        yield Etcd(client, process)
    finally:
        _stop(process)


@dataclass
class KubeApiServer:
    """A running kube-apiserver: its URL, CA, tokens, logs, and clients for each identity."""

    url: str
    ca_file: Path
    tokens: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes]
    audit_log: Path | None = None
    _clients: dict[str, Client] = field(default_factory=dict[str, Client])

    @property
    def log(self) -> Path:
        """The apiserver's own stderr (klog)."""
        return self.workdir / "kube-apiserver.log"

    def kubeconfig(self, user: str) -> str:
        """A kubeconfig for ``user``, as a client outside the cluster would have."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": self.tokens[user]}}],
            "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}],
            "current-context": user,
        }
        return yaml.safe_dump(document)

    def write_kubeconfig(self, user: str, path: Path) -> Path:
        path.write_text(self.kubeconfig(user))
        return path

    def client(self, user: str = ADMIN) -> Client:
        """A lightkube client acting as ``user`` (field manager: the harness)."""
        if user not in self._clients:
            config = KubeConfig.from_dict(yaml.safe_load(self.kubeconfig(user)))
            self._clients[user] = Client(config=config, field_manager="test-harness")
        return self._clients[user]

    def http(self, user: str | None = ADMIN) -> httpx2.Client:
        """A plain HTTP client as ``user`` (anonymous for None), for what lightkube lacks."""
        headers = {} if user is None else {"Authorization": f"Bearer {self.tokens[user]}"}
        return httpx2.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=self.ca_file),
            headers=headers,
            timeout=30,
        )

    def audit_events(self) -> list[dict[str, Any]]:
        """Every event the log backend wrote so far (blocking mode: one per finished request)."""
        if self.audit_log is None:
            raise HarnessError("this apiserver was started without an audit log")
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]

    def read(self, resource: Any, name: str, namespace: str | None = None) -> Any:
        """The live object as the admin sees it (loosely typed: tests read nested fields)."""
        return self.client().get(resource, name, namespace=namespace)

    def webhook_posts(self, host: str) -> dict[str, int]:
        """POSTs the apiserver's own clients made to ``host`` (host:port), by answer code.

        client-go's ``rest_client_requests_total`` on /metrics; the audit webhook's client is
        the only one posting to a test listener. A transport failure counts as ``<error>``.
        """
        with self.http() as http:
            text = http.get("/metrics").text
        posts: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("rest_client_requests_total{") and f'host="{host}"' in line:
                labels, value = line.rsplit(" ", 1)
                if 'method="POST"' in labels:
                    code = labels.split('code="', 1)[1].split('"', 1)[0]
                    posts[code] = posts.get(code, 0) + int(float(value))
        return posts

    def requests_by(self, user: str, namespace: str) -> list[tuple[str, str]]:
        """(verb, resource) of each request ``user`` made in ``namespace``, from the audit log."""
        return [
            (event["verb"], event["objectRef"]["resource"])
            for event in self.audit_events()
            if event["user"]["username"] == user
            and event.get("objectRef", {}).get("namespace") == namespace
        ]

    def create_namespace(self, name: str) -> None:
        """A namespace as a cluster has it: with the ``default`` service account pods need."""
        self.client().create(Namespace(metadata=ObjectMeta(name=name)))
        self._default_service_account(name)

    def _default_service_account(self, namespace: str) -> None:
        """What the controller-manager's service-account controller would have made."""
        self.client().create(
            ServiceAccount(metadata=ObjectMeta(name="default", namespace=namespace))
        )

    def grant_untrusted(self, namespace: str) -> None:
        """The Role Juju gives an untrusted application's service account in its namespace."""
        role = Role(
            metadata=ObjectMeta(name=UNTRUSTED, namespace=namespace),
            rules=[
                PolicyRule(
                    apiGroups=[""],
                    resources=["namespaces"],
                    resourceNames=[namespace],
                    verbs=["get", "list"],
                ),
                PolicyRule(
                    apiGroups=[""], resources=["pods", "services"], verbs=["get", "list", "patch"]
                ),
                PolicyRule(apiGroups=[""], resources=["pods/exec"], verbs=["create"]),
            ],
        )
        binding = RoleBinding(
            metadata=ObjectMeta(name=UNTRUSTED, namespace=namespace),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name=UNTRUSTED),
            subjects=[Subject(kind="User", name=UNTRUSTED, apiGroup="rbac.authorization.k8s.io")],
        )
        admin = self.client()
        admin.create(role)
        admin.create(binding)

    def bind_cluster_role(self, user: str, role: str) -> None:
        """A ClusterRoleBinding of ``role`` to ``user``, named after the user."""
        self.client().create(
            ClusterRoleBinding(
                metadata=ObjectMeta(name=user),
                roleRef=RoleRef(
                    apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name=role
                ),
                subjects=[Subject(kind="User", name=user, apiGroup="rbac.authorization.k8s.io")],
            )
        )

    def _bootstrap_rbac(self) -> None:
        """The cluster-wide part of `juju trust` (trusted) and of Juju's default (untrusted)."""
        admin = self.client()
        for user, rules in (
            (TRUSTED, [EVERYTHING]),
            (
                UNTRUSTED,
                [PolicyRule(apiGroups=[""], resources=["namespaces"], verbs=["get", "list"])],
            ),
        ):
            admin.create(ClusterRole(metadata=ObjectMeta(name=user), rules=rules))
            self.bind_cluster_role(user, user)
        self.bind_cluster_role(ALICE, "cluster-admin")
        for namespace in ("default", "kube-system", "kube-public"):
            self._default_service_account(namespace)
        # RBAC decisions follow an informer: wait until the last binding is seen.
        deadline = time.monotonic() + 30
        while True:
            try:
                list(self.client(ALICE).list(Namespace))
                list(self.client(TRUSTED).list(Namespace))
                return
            except ApiError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _serving_files(workdir: Path) -> dict[str, Path]:
    """A CA and a serving certificate for 127.0.0.1, and the service-account signing key."""
    ca = TestCa("kube-apiserver test CA")
    cert, key = ca.server_pem(("127.0.0.1",))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca.crt": ca.pem,
        "serving.crt": cert,
        "serving.key": key,
        "sa.key": sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "sa.pub": sa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "tokens.csv": "".join(
            f'{os.urandom(16).hex()},{user},{user},"{",".join(groups)}"\n'
            for user, groups in IDENTITIES.items()
        ),
    }
    paths: dict[str, Path] = {}
    for name, text in files.items():
        paths[name] = workdir / name
        paths[name].write_text(text)
        paths[name].chmod(0o600)
    return paths


def _tokens(tokens_csv: Path) -> dict[str, str]:
    return {line.split(",")[1]: line.split(",")[0] for line in tokens_csv.read_text().splitlines()}


@contextlib.contextmanager
def running_kube_apiserver(
    etcd: Etcd,
    workdir: Path | None = None,
    *,
    args: Sequence[str] = (),
    audit_log_policy: str | None = None,
) -> Iterator[KubeApiServer]:
    """Start kube-apiserver on a free 127.0.0.1 port with ``args`` added; stop it after.

    ``audit_log_policy`` (a Policy document) turns on the JSON log backend, in blocking mode so
    that an event is on disk when its request has been answered.
    """
    workdir = workdir or Path(tempfile.mkdtemp(prefix="kube-apiserver-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = _serving_files(workdir)
    port = free_port()
    command = [
        str(binary(KUBE_APISERVER)),
        f"--etcd-servers={etcd.url}",
        f"--etcd-prefix={etcd.next_prefix()}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={files['serving.crt']}",
        f"--tls-private-key-file={files['serving.key']}",
        f"--client-ca-file={files['ca.crt']}",
        f"--token-auth-file={files['tokens.csv']}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",  # as kubeadm and MicroK8s run it: privileged pods exist
        f"--service-account-key-file={files['sa.pub']}",
        f"--service-account-signing-key-file={files['sa.key']}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-cluster-ip-range={SERVICE_CIDR},{SERVICE_CIDR_V6}",
        f"--cert-dir={workdir / 'certs'}",
    ]
    audit_log = None
    if audit_log_policy is not None:
        audit_log = workdir / "audit.log"
        policy = workdir / "log-policy.yaml"
        policy.write_text(audit_log_policy)
        command += [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]
    command += list(args)
    server = None
    log = workdir / "kube-apiserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        server = KubeApiServer(
            f"https://127.0.0.1:{port}",
            files["ca.crt"],
            _tokens(files["tokens.csv"]),
            workdir,
            process,
            audit_log,
        )
        with server.http() as http:
            _wait_ready(
                process,
                log,
                lambda: http.get("/readyz").status_code == 200,
                "kube-apiserver",
                START_SECONDS,
            )
        server._bootstrap_rbac()
        yield server
    finally:
        if server is not None:
            for client in server._clients.values():
                client.close()
        _stop(process)
