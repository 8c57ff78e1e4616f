"""The charm's desired state, validated once per hook.

An invalid option is named in `LoadedConfig.reason` and holds back only the part of the
reconcile it feeds; any other operator-fixable problem in config or relation data becomes an
``InvalidStateError`` whose message is the Blocked status text. Nothing downstream
re-validates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit_policy import AuditPolicyError, resolve_audit_policy
from constants import FORWARDER_LISTEN_HOST, FORWARDER_PORT, MIB, SPOOL_DIR
from custom_rules import CustomRulesError, DisabledRules, check_custom_rules, parse_disabled_rules
from falco_config import PRIORITIES
from falco_forwarder.config import (
    FORMAT_FALCO_JSON,
    ForwarderConfig,
    JujuTopology,
    ListenConfig,
    RetryConfig,
    SinkConfig,
    SpoolConfig,
)
from webhook_config import InvalidCidrError, WebhookServiceSpec, parse_allowed_cidrs


class InvalidStateError(ValueError):
    """An operator-fixable problem; the message is written for the operator."""


def check_http_url(value: str) -> str:
    """Accept only ASCII http(s) URLs with a host: what the forwarder can send to.

    Messages end up in the unit status, so credentials in the URL are never echoed.
    """
    shown = re.sub(r"//[^/@]*@", "//***@", value)
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"only http:// and https:// URLs are accepted (got {got})")
    if not parts.hostname or " " in value or not value.isascii():
        raise ValueError(f"{shown!r} is not an ASCII URL with a host")
    del port
    return value


class CharmConfig(BaseModel):
    """config.yaml, typed; field names are the option names operators type."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    http_output: str = ""
    minimum_priority: str = "debug"
    custom_rules: str = ""
    disabled_rules: str = ""
    alert_log_max_mb: int = Field(default=100, ge=1, le=100_000)
    forwarder_spool_max_mb: int = Field(default=512, ge=1, le=1_000_000)
    webhook_service_type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    webhook_node_port: int = 0
    webhook_cluster_ip: str = ""
    webhook_allowed_cidrs: str = ""
    audit_policy: str = ""

    @field_validator("http_output")
    @classmethod
    def _http_output(cls, value: str) -> str:
        value = value.strip()
        return check_http_url(value) if value else ""

    @field_validator("minimum_priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in PRIORITIES:
            return value.strip().lower()
        raise ValueError(f"must be one of {', '.join(PRIORITIES)} (got {value!r})")


# Which part of the reconcile each option feeds. A bad option holds back its own part only;
# the others converge on their options as usual. alert_log_max_mb is in none: a bad value
# falls back to its default, so the log never goes uncapped.
FALCO_OPTIONS = frozenset({"minimum_priority", "custom_rules", "disabled_rules"})
SINK_OPTIONS = frozenset({"http_output", "forwarder_spool_max_mb"})
WEBHOOK_OPTIONS = frozenset(
    {
        "webhook_service_type",
        "webhook_node_port",
        "webhook_cluster_ip",
        "webhook_allowed_cidrs",
        "audit_policy",
    }
)


@dataclass(frozen=True)
class LoadedConfig:
    """The config with any invalid options at their defaults, which those are, and why."""

    values: CharmConfig
    invalid: frozenset[str] = frozenset()
    reason: str = ""
    """The Blocked status text naming each invalid option; empty when all are valid."""

    def usable_for(self, options: frozenset[str]) -> bool:
        """Whether every option in ``options`` is valid, so the part they feed can converge."""
        return not self.invalid & options

    def require(self, options: frozenset[str]) -> CharmConfig:
        """The config for work that needs ``options``; raise InvalidStateError if any is bad."""
        if not self.usable_for(options):
            raise InvalidStateError(self.reason)
        return self.values


def without_invalid(raw: Mapping[str, object], error: pydantic.ValidationError) -> LoadedConfig:
    """Load ``raw`` again leaving out the options ``error`` names (they take their defaults)."""
    invalid = frozenset(str(item["loc"][0]) for item in error.errors())  # all field errors
    valid = {key: value for key, value in raw.items() if key not in invalid}
    return LoadedConfig(
        CharmConfig.model_validate(valid), invalid, describe_validation_error(error)
    )


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """One line naming each bad option and why, as operators need it in a status."""
    reasons: list[str] = []
    for item in error.errors():
        option = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "literal_error":
            message = f"{message} (got {item['input']!r})"
        reasons.append(f"{option}: {message}")
    return "; ".join(reasons)


@dataclass(frozen=True)
class FalcoState:
    """What Falco itself needs from the config, checked."""

    priority: str
    custom_rules: str
    disabled: DisabledRules


def falco_state(config: CharmConfig) -> FalcoState:
    """Check the rules options; raise InvalidStateError with the reason."""
    try:
        custom = check_custom_rules(config.custom_rules)
    except CustomRulesError as exc:
        raise InvalidStateError(str(exc)) from None
    return FalcoState(
        priority=config.minimum_priority,
        custom_rules=custom,
        disabled=parse_disabled_rules(config.disabled_rules),
    )


@dataclass(frozen=True)
class WebhookState:
    """The audit webhook objects the leader keeps in the cluster."""

    spec: WebhookServiceSpec
    audit_policy: str
    allowed_cidrs: tuple[str, ...]


def webhook_state(config: CharmConfig) -> WebhookState:
    """Check the webhook options; raise InvalidStateError with the reason."""
    try:
        spec = WebhookServiceSpec(
            service_type=config.webhook_service_type,
            node_port=config.webhook_node_port or None,
            cluster_ip=config.webhook_cluster_ip.strip() or None,
        )
    except ValueError as exc:
        raise InvalidStateError(f"webhook_{exc}") from None
    try:
        policy = resolve_audit_policy(config.audit_policy)
    except AuditPolicyError as exc:
        raise InvalidStateError(str(exc)) from None
    try:
        cidrs = parse_allowed_cidrs(config.webhook_allowed_cidrs)
    except InvalidCidrError as exc:
        raise InvalidStateError(f"webhook_{exc}") from None
    return WebhookState(spec, policy, cidrs)


def http_output_sink(config: CharmConfig) -> tuple[SinkConfig, ...]:
    """The operator's own endpoint, fed Falco's JSON unchanged as before the forwarder existed."""
    if not config.http_output:
        return ()
    return (SinkConfig("http_output", FORMAT_FALCO_JSON, config.http_output),)


def forwarder_config(
    sinks: tuple[SinkConfig, ...], topology: JujuTopology, spool_max_mb: int
) -> ForwarderConfig:
    """The forwarder's whole configuration: where it listens, spools, and delivers."""
    return ForwarderConfig(
        listen=ListenConfig(host=FORWARDER_LISTEN_HOST, port=FORWARDER_PORT),
        max_body_bytes=MIB,
        spool=SpoolConfig(dir=Path(SPOOL_DIR), max_bytes=spool_max_mb * MIB),
        juju=topology,
        # Backoff capped at 15 s: a sink that comes back is caught up within seconds.
        retry=RetryConfig(initial_seconds=0.5, max_seconds=15.0, timeout_seconds=10.0),
        sinks=sinks,
    )
