"""The charm's only door to the Kubernetes API: the audit webhook's Service, files and policy.

Everything is written with server-side apply under the application's name as field manager, so
re-running `AuditWebhookCluster.apply` converges on the wanted state. Each object is read back
first and written only when it lacks something the charm wants: a converged leader only reads
(a GET each) and writes nothing, `update-status` included. The read-back also catches drift
(someone edited or deleted an object), so no periodic re-apply is needed. An option cleared
that only lets Kubernetes choose (a node port, a cluster IP) keeps the value the Service has,
so the kube-apiserver's webhook file stays right. The Service Juju creates for the application
is never touched. Every API or transport failure leaves this module as `ClusterError` (or
`ClusterForbiddenError` when the charm lacks RBAC), never as a lightkube or httpx2 exception.

A fixed ``cluster_ip`` cannot be moved on an existing Service (Kubernetes makes it immutable).
Rather than deleting and recreating the Service itself, which would leave no Service at all if
the new address turned out to be taken or out of range, `apply` refuses with a `ClusterError`
telling the operator to delete it; the next apply recreates it with the new address. The
operator has to redeploy the kube-apiserver's webhook file for the new address anyway.
"""

import base64
import ipaddress
import logging
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import httpx2
from lightkube import ApiError, Client, ConfigError
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.models.networking_v1 import (
    IPBlock,
    NetworkPolicyIngressRule,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    NetworkPolicySpec,
)
from lightkube.resources.core_v1 import ConfigMap, Secret, Service
from lightkube.resources.networking_v1 import NetworkPolicy

from constants import FORWARDER_PORT, INTAKE_METRICS_PORT, WEBHOOK_PORT, WEBSERVER_PORT
from webhook._apiserver_side import (
    AUDIT_POLICY_KEY,
    WEBHOOK_CONFIG_KEY,
    WebhookAddress,
    WebhookServiceSpec,
    webhook_kubeconfig,
    webhook_resource_name,
)
from webhook._audit_policy import AuditPolicy
from webhook._options import WebhookState

WEBHOOK_PORT_NAME = "k8s-audit"

_Resource = TypeVar("_Resource", Service, ConfigMap, Secret, NetworkPolicy)

_NOT_FOUND = 404
_FORBIDDEN = 403
_TOO_MANY_REQUESTS = 429
_HEADLESS = "None"  # the clusterIP of a Service without one

logger = logging.getLogger(__name__)


class ClusterError(Exception):
    """A Kubernetes API call failed; the message is short enough for a unit status.

    ``retryable`` is true for failures that may pass on their own (5xx, 429, unreachable API),
    false for those an operator must fix (a conflict, an invalid object). ``fields`` are the
    object's fields the API found invalid (its Status causes), if any.
    """

    def __init__(self, message: str, *, retryable: bool = False, fields: tuple[str, ...] = ()):
        super().__init__(message)
        self.retryable = retryable
        self.fields = fields


class ClusterForbiddenError(ClusterError):
    """The charm's service account may not manage the webhook resources."""


class AuditWebhookCluster:
    """The webhook's Kubernetes objects for one application in its model's namespace."""

    def __init__(self, app: str, namespace: str, client: Client | None = None):
        """Bind to an application; the lightkube client is created on first use when not given."""
        self.app = app
        self.namespace = namespace
        self.name = webhook_resource_name(app)
        self._client = client

    @property
    def _api(self) -> Client:
        if self._client is None:
            try:
                self._client = Client(field_manager=self.app)
            except ConfigError as exc:
                raise ClusterError(f"cannot load Kubernetes credentials: {exc}") from exc
        return self._client

    def apply(
        self,
        spec: WebhookServiceSpec,
        *,
        audit_policy: AuditPolicy,
        allowed_cidrs: tuple[str, ...],
        ca_cert: str | None = None,
        token: str | None = None,
    ) -> WebhookAddress:
        """Leader only: converge the Service, ConfigMap, Secret and NetworkPolicy.

        Returns the live address: the kubeconfig in the Secret is rendered from the Service the
        API server returns, so it carries the addresses Kubernetes actually allocated, the CA
        the intake's certificate comes from and the token; it waits for both.

        Raises:
            ClusterForbiddenError: the application is not trusted with cluster access.
            ClusterError: any other API failure, or a change of a fixed cluster IP.
        """
        live = self._read(Service)
        if spec.cluster_ip is not None:
            self._refuse_cluster_ip_change(live, spec.cluster_ip)
        try:
            service = self._converge(self._service(spec), live)
        except ClusterError as exc:
            raise _name_fixed_options(exc, spec) from exc.__cause__
        address = self._address(service)
        live_map = self._read(ConfigMap)
        held = cast("dict[str, str]", live_map.data or {}) if live_map is not None else {}  # pyright: ignore[reportUnknownMemberType]
        # The policy is rendered only when the ConfigMap does not hold it already.
        config_map = ConfigMap(
            metadata=self._metadata(),
            data={AUDIT_POLICY_KEY: audit_policy.text(held.get(AUDIT_POLICY_KEY))},
        )
        # A ConfigMap an older revision wrote still names the webhook file: apply drops it.
        stale = WEBHOOK_CONFIG_KEY in held
        self._converge(config_map, None if stale else live_map)
        if ca_cert is not None and token is not None:
            kubeconfig = webhook_kubeconfig(address, ca_cert, token)
            secret = Secret(
                metadata=self._metadata(),
                type="Opaque",
                data={WEBHOOK_CONFIG_KEY: base64.b64encode(kubeconfig.encode()).decode()},
            )
            self._converge(secret, self._read(Secret))
        policy = self._read(NetworkPolicy)
        if allowed_cidrs:
            self._converge(self._network_policy(allowed_cidrs), policy)
        elif policy is not None:
            self._delete(NetworkPolicy)
        return address

    def read_address(self) -> WebhookAddress | None:
        """Read-only lookup for any unit: the live address, or None before the leader applied.

        Raises:
            ClusterError: the API failed, or the Service has no address yet.
        """
        service = self._read(Service)
        return None if service is None else self._address(service)

    def remove(self) -> None:
        """Delete everything `apply` created; objects already gone are fine.

        Raises:
            ClusterError: a deletion failed for another reason than the object being absent.
        """
        for resource in (NetworkPolicy, Secret, ConfigMap, Service):
            self._delete(resource)

    def converge(
        self,
        webhook: WebhookState | None,
        *,
        leader: bool,
        ca_cert: str | None,
        token: str | None,
    ) -> WebhookAddress | None:
        """The leader applies ``webhook`` (when valid); any unit reads back the live address."""
        if leader and webhook is not None:
            return self.apply(
                webhook.spec,
                audit_policy=webhook.audit_policy,
                allowed_cidrs=webhook.allowed_cidrs,
                ca_cert=ca_cert,
                token=token,
            )
        return self.read_address()

    @contextmanager
    def _errors(self, action: str) -> Generator[None]:
        """Translate lightkube/httpx2 failures into ClusterError naming ``action``."""
        try:
            yield
        except httpx2.HTTPStatusError as exc:
            code = exc.response.status_code
            if code == _FORBIDDEN:
                raise ClusterForbiddenError(
                    f"{action} forbidden: run: juju trust {self.app} --scope=cluster"
                ) from exc
            status = exc.status if isinstance(exc, ApiError) else None
            causes = status.details.causes if status and status.details else None
            raise ClusterError(
                f"{action} failed: HTTP {code}: "
                f"{(status and status.message) or exc.response.reason_phrase}",
                retryable=code >= 500 or code == _TOO_MANY_REQUESTS,
                fields=tuple(cause.field for cause in causes or () if cause.field),
            ) from exc
        except httpx2.HTTPError as exc:
            raise ClusterError(
                f"{action} failed: Kubernetes API unreachable: {type(exc).__name__}: {exc}",
                retryable=True,
            ) from exc

    def _read(self, resource: type[_Resource]) -> _Resource | None:
        """The live object, or None when it does not exist."""
        with self._errors(f"read {resource.__name__}"):
            try:
                return self._api.get(resource, self.name, namespace=self.namespace)
            except ApiError as exc:
                if exc.response.status_code == _NOT_FOUND:
                    return None
                raise

    def _converge(self, wanted: _Resource, live: _Resource | None) -> _Resource:
        """Server-side apply ``wanted`` unless ``live`` already holds every field of it."""
        if live is not None and _holds(live.to_dict(), wanted.to_dict()):  # pyright: ignore[reportUnknownMemberType]
            return live
        with self._errors(f"apply {type(wanted).__name__}"):
            return self._api.apply(wanted, field_manager=self.app, force=True)

    def _delete(self, resource: type[Service | ConfigMap | Secret | NetworkPolicy]) -> None:
        with self._errors(f"delete {resource.__name__}"):
            try:
                self._api.delete(resource, self.name, namespace=self.namespace)
            except ApiError as exc:
                if exc.response.status_code != _NOT_FOUND:
                    raise

    def _refuse_cluster_ip_change(self, live: Service | None, wanted: str) -> None:
        """Fail early, with the way out, instead of on the API server's immutable-field 422."""
        current = live.spec.clusterIP if live is not None and live.spec is not None else None
        if current and current != str(ipaddress.ip_address(wanted)):
            raise ClusterError(
                f"webhook_cluster_ip {wanted}: Kubernetes cannot move the Service off {current}"
                f": run: kubectl -n {self.namespace} delete service {self.name}"
                " (the charm recreates it), then update the kube-apiserver webhook file"
            )

    def _address(self, service: Service) -> WebhookAddress:
        spec = service.spec or ServiceSpec()
        if not spec.clusterIP or spec.clusterIP == _HEADLESS:
            raise ClusterError(f"Service {self.name} has no cluster IP")
        service_type = spec.type or "ClusterIP"
        node_port = None
        if service_type == "NodePort":
            ports = [p.nodePort for p in spec.ports or [] if p.name == WEBHOOK_PORT_NAME]
            node_port = ports[0] if ports else None
            if node_port is None:
                raise ClusterError(f"Service {self.name} has no node port for {WEBHOOK_PORT_NAME}")
        return WebhookAddress(service_type, spec.clusterIP, node_port)

    @property
    def _selector(self) -> dict[str, str]:
        """How Juju labels this application's pods."""
        return {"app.kubernetes.io/name": self.app}

    def _metadata(self) -> ObjectMeta:
        labels = {
            **self._selector,
            "app.kubernetes.io/managed-by": self.app,
            "app.juju.is/created-by": self.app,
        }
        return ObjectMeta(name=self.name, namespace=self.namespace, labels=labels)

    def _service(self, spec: WebhookServiceSpec) -> Service:
        # Unset optionals are left out of the apply body: Kubernetes then allocates them, and a
        # switch back to ClusterIP drops the node port this field manager owned.
        port = ServicePort(
            name=WEBHOOK_PORT_NAME,
            port=WEBHOOK_PORT,
            targetPort=WEBHOOK_PORT,
            protocol="TCP",
            nodePort=spec.node_port,
        )
        return Service(
            metadata=self._metadata(),
            spec=ServiceSpec(
                type=spec.service_type,
                selector=self._selector,
                ports=[port],
                clusterIP=None
                if spec.cluster_ip is None
                else str(ipaddress.ip_address(spec.cluster_ip)),
            ),
        )

    def _network_policy(self, allowed_cidrs: tuple[str, ...]) -> NetworkPolicy:
        """Webhook port from the allowed networks only; the metrics ports stay open to all.

        The pod sees the apiserver's traffic coming from a node address (kube-proxy masquerades
        host traffic to a Service, often to the node's pod-network interface), so the networks
        must cover the control-plane nodes as the pod network sees them.
        """
        webhook = NetworkPolicyIngressRule(
            from_=[NetworkPolicyPeer(ipBlock=IPBlock(cidr=cidr)) for cidr in allowed_cidrs],
            ports=[NetworkPolicyPort(port=WEBHOOK_PORT, protocol="TCP")],
        )
        # Falco's, the forwarder's and the intake's /metrics, for Prometheus (metrics-endpoint).
        metrics = NetworkPolicyIngressRule(
            ports=[
                NetworkPolicyPort(port=port, protocol="TCP")
                for port in (WEBSERVER_PORT, FORWARDER_PORT, INTAKE_METRICS_PORT)
            ]
        )
        return NetworkPolicy(
            metadata=self._metadata(),
            spec=NetworkPolicySpec(
                podSelector=LabelSelector(matchLabels=self._selector),
                policyTypes=["Ingress"],
                ingress=[webhook, metrics],
            ),
        )


def remove_webhook_objects(app: str, model: str) -> None:
    """Delete the application's cluster objects on its removal; a failure is logged, not raised.

    The remove hook is the last one: a raise would leave the unit stuck in error for nothing.
    """
    try:
        AuditWebhookCluster(app, model).remove()
    except ClusterError as exc:
        logger.error("could not delete the audit webhook objects: %s", exc)


def _name_fixed_options(exc: ClusterError, spec: WebhookServiceSpec) -> ClusterError:
    """A Service the API refused for a fixed address, with the option that asked for it.

    The API's reason (an address out of range, a port taken) names the field, not the option:
    the option comes first, so a status cut to its length still says what to change.
    """
    hints: list[str] = []
    if spec.cluster_ip is not None and any(f.startswith("spec.clusterIP") for f in exc.fields):
        hints.append(
            f"webhook_cluster_ip {spec.cluster_ip}: use a free address in the cluster's"
            " Service IP range"
        )
    if spec.node_port is not None and any(f.endswith(".nodePort") for f in exc.fields):
        hints.append(
            f"webhook_node_port {spec.node_port}: use a free port in the cluster's node port range"
        )
    if not hints:
        return exc
    return ClusterError("; ".join([*hints, str(exc)]), fields=exc.fields)


def _holds(live: Any, wanted: Any) -> bool:
    """Whether ``live`` has every field ``wanted`` sets, with the same value.

    Fields Kubernetes adds (defaults, allocations, status, managedFields) do not count.
    """
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return False
        have = cast("dict[str, Any]", live)
        return all(
            key in have and _holds(have[key], value)
            for key, value in cast("dict[str, Any]", wanted).items()
        )
    if isinstance(wanted, list):
        items = cast("list[Any]", wanted)
        return (
            isinstance(live, list)
            and len(cast("list[Any]", live)) == len(items)
            and all(map(_holds, cast("list[Any]", live), items))
        )
    return live == wanted
