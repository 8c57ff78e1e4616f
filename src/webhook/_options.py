"""The webhook's options, checked: the Service, the NetworkPolicy and the audit policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from options import InvalidStateError, option_error
from webhook._apiserver_side import (
    InvalidCidrError,
    WebhookServiceSpec,
    open_to_everyone,
    parse_allowed_cidrs,
)
from webhook._audit_policy import AuditPolicy

ServiceType = Literal["ClusterIP", "NodePort"]
SERVICE_TYPES: tuple[ServiceType, ...] = ("ClusterIP", "NodePort")


@dataclass(frozen=True)
class WebhookOptions:
    """The options that shape the webhook's objects and the files handed to the admin."""

    webhook_service_type: str = "ClusterIP"
    webhook_node_port: int = 0
    webhook_cluster_ip: str = ""
    webhook_allowed_cidrs: str = ""
    audit_policy: str = ""

    def __post_init__(self) -> None:
        if self.webhook_service_type not in SERVICE_TYPES:
            problem = f"must be {' or '.join(SERVICE_TYPES)}"
            raise option_error("webhook_service_type", problem, self.webhook_service_type)

    @property
    def service_type(self) -> ServiceType:
        """The Service type, checked."""
        return cast("ServiceType", self.webhook_service_type)


@dataclass(frozen=True)
class WebhookState:
    """The audit webhook objects the leader keeps in the cluster."""

    spec: WebhookServiceSpec
    audit_policy: AuditPolicy
    allowed_cidrs: tuple[str, ...]

    @property
    def notes(self) -> tuple[str, ...]:
        """What the status should say of these options: an allowed network that is everyone."""
        return tuple(
            f"webhook_allowed_cidrs {cidr} lets every address reach the webhook"
            for cidr in open_to_everyone(self.allowed_cidrs)
        )


def webhook_state(config: WebhookOptions, policy: AuditPolicy) -> WebhookState:
    """Check the webhook options (``policy``: `audit_policy`, checked); raise InvalidStateError."""
    try:
        spec = WebhookServiceSpec(
            service_type=config.service_type,
            node_port=config.webhook_node_port or None,
            cluster_ip=config.webhook_cluster_ip.strip() or None,
        )
    except ValueError as exc:
        raise InvalidStateError(f"webhook_{exc}") from None
    if policy.check.error:
        raise InvalidStateError(policy.check.error)
    try:
        cidrs = parse_allowed_cidrs(config.webhook_allowed_cidrs)
    except InvalidCidrError as exc:
        raise InvalidStateError(f"webhook_{exc}") from None
    return WebhookState(spec, policy, cidrs)
