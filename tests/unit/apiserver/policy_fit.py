"""Which stock k8s_audit rule reads which audit-event fields, and the action that makes each fire.

The fields come from the pinned rules file itself (`rule_fields`: the condition with its macros
expanded, and the output), so the table cannot drift from the rules. The actions are what a user
does to the cluster (as ``alice``, bound to cluster-admin and not in the rules' allowed users);
the test runs them against a real kube-apiserver started with the charm's recommended policy
and checks each rule's fields arrive in the real k8saudit plugin. `render` writes the table that
docs/reference/audit-policy-fit.md holds (the test compares the two).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import Client, codecs
from lightkube.resources.core_v1 import Pod, Secret

_FIELD = re.compile(r"(?:ka|jevt)\.[A-Za-z_.]*[A-Za-z_](?:\[[^\]]*\])?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
IMAGE = "registry.example/app:1.0"


def expand(condition: str, macros: Mapping[str, str]) -> str:
    """``condition`` with every macro replaced by its own (expanded) condition."""

    def one(match: re.Match[str]) -> str:
        word = match.group(0)
        return f"({expand(macros[word], macros)})" if word in macros else word

    # Fields (ka.x.y, jevt.value[...]) are left alone: only whole words outside them are macros.
    parts = re.split(f"({_FIELD.pattern})", condition)
    return "".join(part if index % 2 else _WORD.sub(one, part) for index, part in enumerate(parts))


def rule_fields(rules: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each rule's fields, in order of first use: its condition (macros expanded), its output."""
    fields: dict[str, list[str]] = {}
    for name, condition in _conditions(rules).items():
        output = next(item["output"] for item in rules if item.get("rule") == name)
        fields[name] = list(dict.fromkeys(_FIELD.findall(condition + " " + output)))
    return fields


def unset_fields(rules: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each rule's fields it reads only as ``not FIELD exists``: they must be empty to match."""
    unset: dict[str, set[str]] = {}
    for name, condition in _conditions(rules).items():
        negated = set(re.findall(rf"not\s+({_FIELD.pattern})\s+exists", condition))
        others = re.sub(rf"not\s+({_FIELD.pattern})\s+exists", "", condition)
        unset[name] = {f for f in negated if f not in _FIELD.findall(others)}
    return unset


def _conditions(rules: list[dict[str, Any]]) -> dict[str, str]:
    macros = {item["macro"]: item["condition"] for item in rules if "macro" in item}
    return {item["rule"]: expand(item["condition"], macros) for item in rules if "rule" in item}


def needed_level(fields: list[str]) -> str:
    """The lowest audit level at which every one of ``fields`` can have a value."""
    if any(f.startswith("ka.resp.") or "/responseObject" in f for f in fields):
        return "RequestResponse"
    if any(f.startswith("ka.req.") or "/requestObject" in f for f in fields):
        return "Request"
    return "Metadata"


@dataclass(frozen=True)
class Ref:
    """The request an action made, to find its audit event: who, what verb, which object."""

    verb: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    user: str = "alice"

    def matches(self, event: dict[str, Any]) -> bool:
        ref = event.get("objectRef", {})
        return (
            event["user"]["username"] == self.user
            and event["verb"] == self.verb
            and ref.get("resource") == self.resource
            and ref.get("subresource", "") == self.subresource
            and ref.get("namespace", "") == self.namespace
            and ref.get("name", "") == self.name
        )


@dataclass
class Actor:
    """Alice's hands on the cluster: lightkube for objects, plain HTTP for the rest."""

    client: Client
    http: httpx2.Client
    anonymous: httpx2.Client
    namespace: str

    def create(self, body: dict[str, Any]) -> Ref:
        obj = codecs.from_dict(body)
        self.client.create(obj)  # pyright: ignore[reportArgumentType, reportCallIssue]
        return self._ref("create", body)

    def delete(self, body: dict[str, Any]) -> Ref:
        """Create the object, then delete it: the delete is the event."""
        self.create(body)
        meta = body["metadata"]
        resource = type(codecs.from_dict(body))
        self.client.delete(resource, meta["name"], namespace=meta.get("namespace"))  # pyright: ignore[reportArgumentType, reportCallIssue]
        return self._ref("delete", body)

    def _ref(self, verb: str, body: dict[str, Any]) -> Ref:
        resource = type(codecs.from_dict(body))._api_info.plural
        meta = body["metadata"]
        namespace = meta.get("namespace", "")
        if resource == "namespaces" and verb != "create":
            namespace = meta["name"]  # the apiserver's request info names a namespace so
        return Ref(verb, resource, namespace, meta["name"])

    def pod_request(self, pod: str, subresource: str, query: str, *, verb: str = "POST") -> Ref:
        """exec/attach/portforward: no node runs the pod, so the apiserver answers 400."""
        path = f"/api/v1/namespaces/{self.namespace}/pods/{pod}/{subresource}?{query}"
        self.http.request(verb, path)
        return Ref("create", "pods", self.namespace, pod, subresource)


def pod(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A Pod with one container and one init container, plus ``spec``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "initContainers": [{"name": "init", "image": IMAGE}],
            "containers": [{"name": "app", "image": IMAGE}],
            **spec,
        },
    }


def _privileged(name: str, namespace: str) -> dict[str, Any]:
    body = pod(name, namespace)
    for key in ("containers", "initContainers"):
        body["spec"][key][0]["securityContext"] = {"privileged": True}
    return body


def _configmap(name: str, namespace: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data or {"key": "value"},
    }


def _service(name: str, namespace: str, kind: str = "ClusterIP") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": kind, "selector": {"app": name}, "ports": [{"port": 80}]},
    }


def _deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]},
            },
        },
    }


def _role(name: str, namespace: str, kind: str, **rule: list[str]) -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if kind == "Role" else {})}
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], **rule}]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "rules": rules,
    }


def _binding(name: str, namespace: str, kind: str, role: str) -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if kind == "RoleBinding" else {})}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}],
    }


def _namespace(name: str, namespace: str) -> dict[str, Any]:
    """A Namespace named after the test's own."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{namespace}-{name}"}}


def _serviceaccount(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def _secret(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"password": SECRET_VALUE},
    }


def ingress(name: str, namespace: str, *, tls: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": "app.example",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "app", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ]
    }
    if tls:
        spec["tls"] = [{"hosts": ["app.example"], "secretName": "app-tls"}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


SECRET_VALUE = "hunter2-never-in-an-event"
EXEC_POD = "exec-target"
EPHEMERAL_POD = "debug-target"


def _ephemeral(actor: Actor) -> Ref:
    """What ``kubectl debug`` sends: a strategic-merge patch of the subresource."""
    patch = {"spec": {"ephemeralContainers": [{"name": "debugger", "image": IMAGE}]}}
    actor.client.patch(Pod.Ephemeralcontainers, EPHEMERAL_POD, patch, namespace=actor.namespace)
    return Ref("patch", "pods", actor.namespace, EPHEMERAL_POD, "ephemeralcontainers")


def _anonymous(actor: Actor) -> Ref:
    actor.anonymous.get("/api/v1/namespaces")
    return Ref("list", "namespaces", user="system:anonymous")


def _missing_secret(actor: Actor) -> Ref:
    actor.http.get(f"/api/v1/namespaces/{actor.namespace}/secrets/absent")
    return Ref("get", "secrets", actor.namespace, "absent")


def _get_secret(actor: Actor) -> Ref:
    actor.create(_secret("read-me", actor.namespace))
    actor.client.get(Secret, "read-me", namespace=actor.namespace)
    return Ref("get", "secrets", actor.namespace, "read-me")


AWS = {"credentials": "aws_access_key_id=AKIAEXAMPLE\n"}

Action = Callable[[Actor], Ref]


def creates(build: Callable[..., dict[str, Any]], name: str, *args: Any, **kwargs: Any) -> Action:
    """Create what ``build`` makes, in the test's namespace unless ``namespace=`` names one."""
    namespace = kwargs.pop("namespace", "")
    return lambda a: a.create(build(name, namespace or a.namespace, *args, **kwargs))


def deletes(build: Callable[..., dict[str, Any]], name: str, *args: Any) -> Action:
    """Create what ``build`` makes in the test's namespace, then delete it."""
    return lambda a: a.delete(build(name, a.namespace, *args))


def lifecycle(
    key: str, what: str, build: Callable[..., dict[str, Any]], name: str, *args: Any
) -> dict[str, tuple[str, Action]]:
    """Two actions: ``KEY-create`` creates it, ``KEY-delete`` creates another and deletes it."""
    return {
        f"{key}-create": (f"create {what}", creates(build, name, *args)),
        f"{key}-delete": (f"delete {what}", deletes(build, f"old-{name}", *args)),
    }


def _pod_request(subresource: str, query: str) -> Action:
    return lambda a: a.pod_request(EXEC_POD, subresource, query)


HOST_ETC = [{"name": "etc", "hostPath": {"path": "/etc"}}]
ACTIONS: dict[str, tuple[str, Action]] = {
    # name: (what it does, for the docs; how)
    "privileged-pod": (
        "create a Pod whose container and init container are privileged",
        creates(_privileged, "privileged"),
    ),
    "sensitive-mount-pod": (
        "create a Pod mounting the host's /etc",
        creates(pod, "etc", volumes=HOST_ETC),
    ),
    "host-network-pod": ("create a Pod with hostNetwork", creates(pod, "net", hostNetwork=True)),
    "host-pid-pod": ("create a Pod with hostPID", creates(pod, "pid", hostPID=True)),
    "host-ipc-pod": ("create a Pod with hostIPC", creates(pod, "ipc", hostIPC=True)),
    "kube-system-pod": (
        "create a Pod in kube-system",
        creates(pod, "intruder", namespace="kube-system"),
    ),
    "node-port-service": ("create a NodePort Service", creates(_service, "node-port", "NodePort")),
    "configmap-with-aws-key": (
        "create a ConfigMap holding an AWS key",
        creates(_configmap, "aws", AWS),
    ),
    "kube-system-configmap-with-aws-key": (
        "create a ConfigMap holding an AWS key in kube-system",
        creates(_configmap, "aws-hidden", AWS, namespace="kube-system"),
    ),
    "anonymous-list": (
        "list namespaces as system:anonymous (granted by a ClusterRoleBinding)",
        _anonymous,
    ),
    "exec": ("exec `id` in a Pod", _pod_request("exec", "command=id&container=app&stdout=true")),
    "attach": ("attach to a Pod", _pod_request("attach", "container=app&stdout=true")),
    "portforward": ("port-forward to a Pod", _pod_request("portforward", "ports=80")),
    "ephemeral-container": ("add an ephemeral container (as `kubectl debug` does)", _ephemeral),
    "namespace-create": ("create a Namespace", creates(_namespace, "new")),
    "namespace-delete": ("delete a Namespace", deletes(_namespace, "gone")),
    "kube-system-serviceaccount": (
        "create a ServiceAccount in kube-system",
        creates(_serviceaccount, "intruder", namespace="kube-system"),
    ),
    "system-clusterrole-delete": (
        "delete a ClusterRole named system:…",
        deletes(_role, "system:falco-test", "ClusterRole"),
    ),
    "cluster-admin-binding": (
        "bind cluster-admin to a user",
        creates(_binding, "mallory-admin", "ClusterRoleBinding", "cluster-admin"),
    ),
    "wildcard-clusterrole": (
        "create a ClusterRole with resources *",
        creates(_role, "wildcard", "ClusterRole", resources=["*"]),
    ),
    "write-clusterrole": (
        "create a ClusterRole that may create pods",
        creates(_role, "writer", "ClusterRole", verbs=["create"]),
    ),
    "exec-clusterrole": (
        "create a ClusterRole that may exec into pods",
        creates(_role, "execer", "ClusterRole", resources=["pods/exec"], verbs=["create"]),
    ),
    **lifecycle("deployment", "a Deployment", _deployment, "web"),
    **lifecycle("service", "a Service", _service, "web"),
    **lifecycle("configmap", "a ConfigMap", _configmap, "settings"),
    **lifecycle("serviceaccount", "a ServiceAccount", _serviceaccount, "robot"),
    **lifecycle("role", "a Role", _role, "reader", "Role"),
    **lifecycle("clusterrole", "a ClusterRole", _role, "reader", "ClusterRole"),
    **lifecycle("rolebinding", "a RoleBinding", _binding, "read", "RoleBinding", "view"),
    **lifecycle(
        "clusterrolebinding", "a ClusterRoleBinding", _binding, "all", "ClusterRoleBinding", "view"
    ),
    **lifecycle("secret", "a Secret", _secret, "db"),
    "secret-get": ("get a Secret", _get_secret),
    "secret-get-missing": ("get a Secret that does not exist (404)", _missing_secret),
    "ingress-without-tls": (
        "create an Ingress without spec.tls",
        creates(ingress, "plain", tls=False),
    ),
    "ingress-with-tls": ("create an Ingress with spec.tls", creates(ingress, "secure", tls=True)),
}


@dataclass(frozen=True)
class Fit:
    """One stock rule: what it matches, the action proving its fields arrive, or why none can.

    ``absent``: fields the action's event rightly lacks, each with the reason (checked absent).
    """

    matches: str
    action: str = ""
    absent: Mapping[str, str] = field(default_factory=dict[str, str])
    never: str = ""
    note: str = ""


_NO_EPHEMERAL = "ephemeral containers cannot be set when a Pod is created"
_EPHEMERAL_AT_CREATE = {
    "ka.req.pod.ephemeralContainers.privileged": _NO_EPHEMERAL,
    "ka.req.pod.ephemeralContainers.image": _NO_EPHEMERAL,
}
_OLD_EPHEMERAL_KIND = (
    "reads the EphemeralContainers kind of Kubernetes 1.16-1.22; since 1.23 the subresource"
    " takes a Pod, whose container is at /requestObject/spec/ephemeralContainers/0 (it arrives)"
)

FITS: dict[str, Fit] = {
    "Disallowed K8s User": Fit(
        "any request, by a user outside allowed_k8s_users", "configmap-create"
    ),
    "Create Disallowed Pod": Fit("create pods", never="allowed_k8s_containers"),
    "Create Privileged Pod": Fit("create pods", "privileged-pod", _EPHEMERAL_AT_CREATE),
    "Create Sensitive Mount Pod": Fit("create pods", "sensitive-mount-pod"),
    "Create HostNetwork Pod": Fit("create pods", "host-network-pod"),
    "Create HostPid Pod": Fit("create pods", "host-pid-pod"),
    "Create HostIPC Pod": Fit("create pods", "host-ipc-pod"),
    "Create NodePort Service": Fit("create services", "node-port-service"),
    "Create/Modify Configmap With Private Credentials": Fit(
        "create, update, patch configmaps",
        "kube-system-configmap-with-aws-key",
        note="checked in kube-system too, where an intruder likes to hide",
    ),
    "Anonymous Request Allowed": Fit("any request by system:anonymous, allowed", "anonymous-list"),
    "Attach/Exec Pod": Fit(
        "create or get pods/exec, pods/attach at ResponseStarted",
        "exec",
        note="one event per session: the policy omits ResponseComplete for these subresources",
    ),
    "port-forward": Fit(
        "pods/portforward, any stage",
        "portforward",
        note="alerts once: the policy omits ResponseComplete for exec/attach/portforward",
    ),
    "EphemeralContainers Created": Fit(
        "create, update, patch pods/ephemeralcontainers",
        "ephemeral-container",
        {
            "jevt.value[/requestObject/ephemeralContainers/0/name]": _OLD_EPHEMERAL_KIND,
            "jevt.value[/requestObject/ephemeralContainers/0/image]": _OLD_EPHEMERAL_KIND,
        },
        note="fires; its output shows <NA> for the container name and image (the rule's paths)",
    ),
    "Create Disallowed Namespace": Fit("create namespaces", "namespace-create"),
    "Pod Created in Kube Namespace": Fit(
        "create pods in kube-system, kube-public", "kube-system-pod"
    ),
    "Service Account Created in Kube Namespace": Fit(
        "create serviceaccounts in kube-system, kube-public", "kube-system-serviceaccount"
    ),
    "System ClusterRole Modified/Deleted": Fit(
        "create, update, patch, delete roles, clusterroles named system:*",
        "system-clusterrole-delete",
        {"ka.target.namespace": "a ClusterRole has no namespace"},
    ),
    "Attach to cluster-admin Role": Fit("create clusterrolebindings", "cluster-admin-binding"),
    "ClusterRole With Wildcard Created": Fit("create roles, clusterroles", "wildcard-clusterrole"),
    "ClusterRole With Write Privileges Created": Fit(
        "create roles, clusterroles", "write-clusterrole"
    ),
    "ClusterRole With Pod Exec Created": Fit("create roles, clusterroles", "exec-clusterrole"),
    "K8s Deployment Created": Fit("create deployments", "deployment-create"),
    "K8s Deployment Deleted": Fit("delete deployments", "deployment-delete"),
    "K8s Service Created": Fit("create services", "service-create"),
    "K8s Service Deleted": Fit("delete services", "service-delete"),
    "K8s ConfigMap Created": Fit("create configmaps", "configmap-create"),
    "K8s ConfigMap Deleted": Fit("delete configmaps", "configmap-delete"),
    "K8s Namespace Created": Fit("create namespaces", "namespace-create"),
    "K8s Namespace Deleted": Fit("delete namespaces", "namespace-delete"),
    "K8s Serviceaccount Created": Fit("create serviceaccounts", "serviceaccount-create"),
    "K8s Serviceaccount Deleted": Fit("delete serviceaccounts", "serviceaccount-delete"),
    "K8s Role Created": Fit("create roles", "role-create"),
    "K8s Role Deleted": Fit("delete roles", "role-delete"),
    "K8s ClusterRole Created": Fit("create clusterroles", "clusterrole-create"),
    "K8s ClusterRole Deleted": Fit("delete clusterroles", "clusterrole-delete"),
    "K8s RoleBinding Created": Fit("create rolebindings", "rolebinding-create"),
    "K8s RoleBinding Deleted": Fit("delete rolebindings", "rolebinding-delete"),
    "K8s ClusterRoleBinding Created": Fit(
        "create clusterrolebindings", "clusterrolebinding-create"
    ),
    "K8s ClusterRoleBinding Deleted": Fit(
        "delete clusterrolebindings", "clusterrolebinding-delete"
    ),
    "K8s Secret Created": Fit("create secrets outside kube-system", "secret-create"),
    "K8s Secret Deleted": Fit("delete secrets outside kube-system", "secret-delete"),
    "K8s Secret Get Successfully": Fit("get secrets, 2xx", "secret-get"),
    "K8s Secret Get Unsuccessfully Tried": Fit("get secrets, not 2xx", "secret-get-missing"),
    "All K8s Audit Events": Fit("every event", never="consider_all_events"),
    "Full K8s Administrative Access": Fit(
        "any request by a user in full_admin_k8s_users", never="allowed_full_admin_users"
    ),
    "Ingress Object without TLS Certificate Created": Fit(
        "create ingresses without spec.tls",
        "ingress-without-tls",
        {"jevt.value[/requestObject/spec/tls]": "the Ingress has no spec.tls: that is the alert"},
        note="an Ingress with spec.tls carries it (no false alert): checked too",
    ),
    "Untrusted Node Successfully Joined the Cluster": Fit(
        "create nodes, 2xx", never="allow_all_k8s_nodes"
    ),
    "Untrusted Node Unsuccessfully Tried to Join the Cluster": Fit(
        "create nodes, not 2xx", never="allow_all_k8s_nodes"
    ),
}


def render(
    rules: list[dict[str, Any]], levels: Mapping[str, str], macros: Mapping[str, str]
) -> str:
    """The markdown table: one row per stock rule, in the rules file's order.

    ``levels``: the level each action's event had on the real apiserver.
    """
    rows = [
        "| Rule | Matches | Fields read | Needs | Level (real apiserver) | Status |",
        "|---|---|---|---|---|---|",
    ]
    unset = unset_fields(rules)
    for name, fields in rule_fields(rules).items():
        fit = FITS[name]
        read = ", ".join(
            f"`{f}`" + (" (must be unset)" if f in unset[name] else "") for f in fields
        )
        if fit.never:
            status = f"never fires: `{fit.never}` is `{macros[fit.never]}`"
            level = "—"
        else:
            status = "verified"
            reasons: dict[str, list[str]] = {}
            for absent, why in fit.absent.items():
                reasons.setdefault(why, []).append(f"`{absent}`")
            for why, absent in reasons.items():
                status += f"; empty: {', '.join(absent)} ({why})"
            if fit.note:
                status += f"; {fit.note}"
            level = levels[fit.action]
        rows.append(
            f"| {name} | {fit.matches} | {read} | {needed_level(fields)} | {level} | {status} |"
        )
    return "\n".join(rows) + "\n"
