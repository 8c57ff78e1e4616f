"""The charm's desired state, validated once per hook.

An invalid option is named in `LoadedConfig.reason` and holds back only the part of the
reconcile it feeds; any other operator-fixable problem in config or relation data becomes an
``InvalidStateError`` whose message is the Blocked status text. Nothing downstream
re-validates.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

import custom_rules
import rules_listing
from audit_policy import AuditPolicyError, resolve_audit_policy
from constants import PRIORITIES
from custom_rules import CustomRulesError, parse_disabled_rules, read_custom_rules, rule_names
from falco_config import FalcoSettings
from falco_forwarder.config import url_problem
from webhook_config import InvalidCidrError, WebhookServiceSpec, parse_allowed_cidrs


class InvalidStateError(ValueError):
    """An operator-fixable problem; the message is written for the operator."""


def check_http_url(value: str) -> str:
    """Accept only what the forwarder can send to (its own rule); the reason is for the status."""
    if problem := url_problem(value):
        raise ValueError(problem)
    return value


class CharmConfig(BaseModel):
    """config.yaml, typed; field names are the option names operators type."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    http_output: str = ""
    minimum_priority: str = "debug"
    custom_rules: str = ""
    disabled_rules: str = ""
    alert_log_retention_mb: int = Field(default=512, ge=16, le=1_000_000)
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
# the others converge on their options as usual; a running forwarder keeps its retention.
FALCO_OPTIONS = frozenset({"minimum_priority", "custom_rules", "disabled_rules"})
SINK_OPTIONS = frozenset({"http_output", "alert_log_retention_mb"})
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


def load_config(options: Mapping[str, object]) -> LoadedConfig:
    """The charm's options, typed; invalid ones are left at their defaults and named."""
    raw = {key.replace("-", "_"): value for key, value in options.items()}
    try:
        return LoadedConfig(CharmConfig.model_validate(raw))
    except pydantic.ValidationError as exc:
        return without_invalid(raw, exc)


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
    """What Falco needs from the config, checked: its typed settings and the custom rules."""

    settings: FalcoSettings
    custom_rules: str
    unmatched: tuple[str, ...]
    """`disabled_rules` entries that select no rule: Falco accepts them silently."""
    checked: str
    """This check's outcome (JSON), for `falco_state` to skip an unchanged text next time."""


def falco_state(
    config: CharmConfig, shipped_rules: Sequence[bytes], remembered: str = ""
) -> FalcoState:
    """Check the rules options against the rules files the charm ships; raise InvalidStateError.

    Checking 1 MiB of rules costs most of a hook, and every hook would pay it again: when
    ``remembered`` (an earlier ``checked``) is for the same rules, options and checks, its
    outcome is used instead.
    """
    disabled = parse_disabled_rules(config.disabled_rules)
    key = _check_key(config, shipped_rules)
    outcome = _recall(remembered, key)
    if outcome is None:
        try:
            custom = read_custom_rules(config.custom_rules)
        except CustomRulesError as exc:
            raise InvalidStateError(str(exc)) from None
        shipped = (rule_names(rules) for rules in shipped_rules)
        unmatched = disabled.unmatched(*shipped, custom.rules)
        outcome = _RulesCheck(key, blank=not custom.text, unmatched=tuple(unmatched))
    settings = FalcoSettings(
        priority=config.minimum_priority,
        rules_selection=disabled.falco_selection(),
    )
    return FalcoState(
        settings=settings,
        custom_rules="" if outcome.blank else config.custom_rules,
        unmatched=outcome.unmatched,
        checked=json.dumps(dataclasses.asdict(outcome), sort_keys=True),
    )


@dataclass(frozen=True)
class _RulesCheck:
    """The outcome of checking a rules text, and what it was for (`_check_key`)."""

    key: str
    blank: bool
    unmatched: tuple[str, ...]


def _check_key(config: CharmConfig, shipped_rules: Sequence[bytes]) -> str:
    """Fingerprint of everything the rules check reads, the checking code included."""
    digest = hashlib.sha256(_checks_digest())
    for part in (*shipped_rules, config.custom_rules.encode("utf-8", "surrogatepass")):
        digest.update(hashlib.sha256(part).digest())
    digest.update(config.disabled_rules.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


@functools.cache
def _checks_digest() -> bytes:
    """The checks' own code: a charm upgrade that changes them checks every text again."""
    modules = (custom_rules, rules_listing)
    return hashlib.sha256(b"".join(Path(m.__file__ or "").read_bytes() for m in modules)).digest()


def _recall(remembered: str, key: str) -> _RulesCheck | None:
    """The remembered outcome if it is for ``key``; None when there is none or it is stale."""
    try:
        data: object = json.loads(remembered) if remembered else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    fields = cast("dict[str, object]", data)
    blank, unmatched = fields.get("blank"), fields.get("unmatched")
    if fields.get("key") != key or not isinstance(blank, bool) or not isinstance(unmatched, list):
        return None
    return _RulesCheck(key, blank, tuple(str(entry) for entry in cast("list[object]", unmatched)))


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
