"""Falco's options, checked: typed settings for falco.yaml and the custom rules text.

Checking 1 MiB of rules costs most of a hook, and every hook would pay it again, so a check's
outcome is remembered (by the caller) and reused while the rules, options and checks are the same.
So is the check of ``cluster_name``, whose rule, the gelf library's, loads pydantic.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from constants import PRIORITIES
from falco import _custom_rules, _rules_listing
from falco._custom_rules import (
    CustomRulesError,
    parse_disabled_rules,
    read_custom_rules,
    rule_names,
)
from falco._falco_yaml import FalcoSettings
from options import InvalidStateError, option_error
from peer_memory import recalled_check
from report import UNPRINTABLE

# disabled_rules lands in falco.yaml, in the unit's peer data and, entry by entry, in the status;
# each entry is matched against every rule. Falco's stock k8s audit ruleset has about 40 rules,
# and tags switch off groups of rules: these bounds are ample. The match against the rules runs
# once per text of both options (a remembered check), not on every hook.
MAX_DISABLED_RULES_BYTES = 16_384
MAX_DISABLED_RULES_ENTRIES = 256

_GELF_LIBRARY = "charms.falco_k8s.v0.gelf"


@dataclass(frozen=True)
class FalcoOptions:
    """The options that shape what Falco runs."""

    minimum_priority: str = "debug"
    custom_rules: str = ""
    disabled_rules: str = ""
    cluster_name: str = ""

    def __post_init__(self) -> None:
        priority = self.minimum_priority.strip().lower()
        if priority not in PRIORITIES:
            problem = f"must be one of {', '.join(PRIORITIES)}"
            raise option_error("minimum_priority", problem, self.minimum_priority)
        object.__setattr__(self, "minimum_priority", priority)
        _check_disabled_rules(self.disabled_rules)


def _check_disabled_rules(text: str) -> None:
    """Refuse a `disabled_rules` too large to carry, or holding characters no rule name has.

    The message shows no entry: an entry with control or direction characters would garble it.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DISABLED_RULES_BYTES:
        problem = (
            f"{size} bytes, over the limit of {MAX_DISABLED_RULES_BYTES}; use tag:<tag> entries"
        )
        raise option_error("disabled_rules", problem)
    entries = [entry for entry in (part.strip() for part in text.split(",")) if entry]
    if len(entries) > MAX_DISABLED_RULES_ENTRIES:
        problem = (
            f"{len(entries)} entries, over the limit of {MAX_DISABLED_RULES_ENTRIES};"
            " use tag:<tag> entries"
        )
        raise option_error("disabled_rules", problem)
    for number, entry in enumerate(entries, start=1):
        if bad := UNPRINTABLE.search(entry):
            problem = (
                f"entry {number} holds U+{ord(bad.group()):04X}, a control or direction"
                " character no rule name has"
            )
            raise option_error("disabled_rules", problem)


@dataclass(frozen=True)
class FalcoState:
    """What Falco needs from the config, checked: its typed settings and the custom rules."""

    settings: FalcoSettings
    custom_rules: str
    unmatched: tuple[str, ...]
    """`disabled_rules` entries that select no rule: Falco accepts them silently."""
    detection_off: bool
    """`disabled_rules` switches off every rule: Falco runs and detects nothing."""
    checked: str
    """This check's outcome (JSON), for `falco_state` to skip an unchanged text next time."""


def falco_state(
    config: FalcoOptions, shipped_rules: Sequence[bytes], remembered: str = ""
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
        if config.cluster_name:
            _check_cluster_name(config.cluster_name)
        try:
            custom = read_custom_rules(config.custom_rules)
        except CustomRulesError as exc:
            raise InvalidStateError(str(exc)) from None
        rules = [*(rule_names(text) for text in shipped_rules), custom.rules]
        outcome = _RulesCheck(
            key,
            blank=not custom.text,
            unmatched=tuple(disabled.unmatched(*rules)),
            every_rule_off=disabled.disables_every_rule(*rules),
        )
    settings = FalcoSettings(
        priority=config.minimum_priority,
        rules_selection=disabled.falco_selection(),
        cluster_name=config.cluster_name,
    )
    return FalcoState(
        settings=settings,
        custom_rules="" if outcome.blank else config.custom_rules,
        unmatched=outcome.unmatched,
        detection_off=outcome.every_rule_off,
        checked=json.dumps(dataclasses.asdict(outcome), sort_keys=True),
    )


def _check_cluster_name(value: str) -> None:
    """The gelf library's rule, the one the gelf integrator checks; the value is never echoed."""
    from charms.falco_k8s.v0.gelf import check_cluster_name  # noqa: PLC0415

    try:
        check_cluster_name(value)
    except ValueError as exc:
        raise option_error("cluster_name", str(exc)) from None


@dataclass(frozen=True)
class _RulesCheck:
    """The outcome of checking a rules text, and what it was for (`_check_key`)."""

    key: str
    blank: bool
    unmatched: tuple[str, ...]
    every_rule_off: bool = False


def _check_key(config: FalcoOptions, shipped_rules: Sequence[bytes]) -> str:
    """Fingerprint of everything the checks read, the checking code included."""
    digest = hashlib.sha256(_checks_digest())
    texts = (config.custom_rules, config.cluster_name)
    for part in (*shipped_rules, *(text.encode("utf-8", "surrogatepass") for text in texts)):
        digest.update(hashlib.sha256(part).digest())
    digest.update(config.disabled_rules.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


@functools.cache
def _checks_digest() -> bytes:
    """The checks' own code: a charm upgrade that changes them checks every text again."""
    gelf = importlib.util.find_spec(_GELF_LIBRARY)  # its source, without loading it
    files = (_custom_rules.__file__, _rules_listing.__file__, gelf and gelf.origin)
    return hashlib.sha256(b"".join(Path(f or "").read_bytes() for f in files)).digest()


def _recall(remembered: str, key: str) -> _RulesCheck | None:
    """The remembered outcome if it is for ``key``; None when there is none or it is stale."""
    fields = recalled_check(remembered, key) or {}
    blank, unmatched = fields.get("blank"), fields.get("unmatched")
    every_rule_off = fields.get("every_rule_off")
    if not isinstance(blank, bool) or not isinstance(unmatched, list):
        return None
    if not isinstance(every_rule_off, bool):
        return None
    entries = tuple(str(entry) for entry in cast("list[object]", unmatched))
    return _RulesCheck(key, blank, entries, every_rule_off)
