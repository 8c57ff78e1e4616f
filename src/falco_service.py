"""Falco's own behaviour in its container: converge on a candidate, keep the last good, list rules.

Usable outside a charm: it takes a `Workload` and plain data (the candidate files, the last
good config as remembered text, the current certificate) and returns plain outcomes; the
charm turns them into statuses and keeps what is to be remembered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import falco_reload
import rules_gate
from bundle import Bundle, manifest_digest
from constants import (
    ALERT_LOG_DIR,
    CHARM_RULES,
    FALCO_CONFIG,
    FALCO_CONFIG_DIR,
    FALCO_CUSTOM_RULES,
    K8S_AUDIT_RULES,
    PLUGIN_MANIFEST,
    WEBHOOK_PEM,
)
from falco_config import is_managed
from falco_output import LoadedRule, RulesListingError, first_error_line, parse_rules_listing
from pebble_layers import FALCO_COMMAND, falco_layer
from rules_listing import apply_selection, parse_rules_selection, show_rules_result
from state import CharmConfig, falco_state
from webhook_tls import WebhookTls
from workload import Workload

logger = logging.getLogger(__name__)

LIST_RULES_TIMEOUT = 60.0


@dataclass(frozen=True)
class FalcoOutcome:
    """What converging Falco did, in the words the unit status needs."""

    accepted: str = ""
    """The candidate Falco accepted, as `FalcoFiles.to_json`, to remember as the last good."""
    rejected: str = ""
    """Why Falco refused the candidate (Blocked)."""
    problem: str = ""
    """Why the config cannot be called applied yet (Waiting)."""
    note: str = ""
    """Worth saying in an Active status."""
    confirmed: bool | None = None
    """Whether Falco reported the files written; None when it was not asked in this hook."""


def config_is_ours(falco: Workload) -> bool:
    """Whether the live falco.yaml is one the charm wrote, not the image's own default."""
    live = falco.read(FALCO_CONFIG)
    return live is not None and is_managed(live)


@dataclass(frozen=True)
class Candidate:
    """The files the current config asks Falco to run, and what checking it found."""

    files: rules_gate.FalcoFiles
    checked: str
    """The rules check's outcome, to remember: an unchanged text is not checked again."""
    notes: tuple[str, ...] = ()


def candidate(
    config: CharmConfig, bundle: Bundle, tls: WebhookTls | None, remembered: str = ""
) -> Candidate:
    """The candidate file set for ``config``; InvalidStateError names what the operator must fix.

    Falco always writes its alerts to the alert log, sinks or none: adding the first sink or
    removing the last then only reloads the forwarder, and never touches Falco.
    """
    falco = falco_state(config, bundle.shipped_rules, remembered)
    notes: tuple[str, ...] = ()
    # Falco accepts selections that match nothing silently; pass them on anyway, since the
    # rules may come later, but tell the operator.
    if falco.unmatched:
        logger.warning("disabled_rules entries select no rule: %s", falco.unmatched)
        notes = (f"disabled_rules matched nothing: {', '.join(falco.unmatched)}",)
    pem = tls.pem if tls is not None else None
    files = rules_gate.FalcoFiles(falco.settings, *bundle.shipped_rules, falco.custom_rules, pem)
    return Candidate(files, falco.checked, notes)


def converge(
    falco: Workload,
    candidate: rules_gate.FalcoFiles | None,
    bundle: Bundle,
    last_good: str,
    tls: WebhookTls | None,
    *,
    tls_usable: bool,
    unconfirmed: bool = False,
) -> FalcoOutcome:
    """Swap in the candidate if Falco accepts it, and keep Falco running on the last good.

    ``unconfirmed``: Falco never reported the files of the last change (remembered by the
    caller from an earlier outcome's ``confirmed``); the outcome keeps saying so until it does.
    Raises WorkloadError when the container goes away or stalls mid-change: the live files are
    then untouched or complete (each is swapped whole), and the next call converges again.
    """
    falco.sync_tree(bundle.plugins, bundle.plugins_manifest, manifest_path=PLUGIN_MANIFEST)
    # Falco creates the log file, not its directory: private to the pod's root users.
    falco.ensure_dir(ALERT_LOG_DIR, permissions=0o700)
    webhook_pem = tls.pem if tls is not None else None
    applied: rules_gate.FalcoFiles | None = None
    accepted = rejected = ""
    changed = False
    if candidate is not None:
        try:
            changed = rules_gate.apply(falco, candidate)
            applied, accepted = candidate, candidate.to_json()
        except rules_gate.GateRejectedError as exc:
            what = "custom_rules" if exc.about_custom_rules else "falco.yaml"
            rejected = f"{what} rejected by Falco: {exc}"
    # Otherwise the live files are the last config Falco accepted, if the charm wrote them
    # and they serve the current certificate (or the new one cannot be served anyway).
    live = applied is not None or (
        config_is_ours(falco) and (not tls_usable or falco.read(WEBHOOK_PEM) == webhook_pem)
    )
    if not live and last_good:
        applied = _restore(falco, last_good, bundle, webhook_pem)
        live = changed = applied is not None
    pending = falco_reload.NOT_ASKED if unconfirmed else ""
    if not live:
        return FalcoOutcome(accepted, rejected, pending)
    started = falco.ensure_service(falco_layer(manifest_digest(bundle.plugins_manifest)))
    if applied is None or started:
        return FalcoOutcome(accepted, rejected, pending)
    # A running Falco hot-reloads; only its own report says the change landed.
    check = falco_reload.confirm_reload(
        falco, applied.at(FALCO_CONFIG_DIR), changed=changed, unconfirmed=unconfirmed
    )
    return FalcoOutcome(accepted, rejected, check.problem, check.note, check.confirmed)


def _restore(
    falco: Workload, last_good: str, bundle: Bundle, webhook_pem: bytes | None
) -> rules_gate.FalcoFiles | None:
    """Bring back the last config Falco accepted, with the current certificate.

    For a fresh container (pod rescheduled) or a new certificate while the current config is
    refused: better than leaving the cluster unwatched or the webhook file wrong.
    """
    try:
        restored = rules_gate.FalcoFiles.from_json(last_good, bundle, webhook_pem)
        rules_gate.apply(falco, restored)
    except rules_gate.GateRejectedError as exc:
        logger.error("last good config no longer accepted by Falco: %s", exc.output)
        return None
    except ValueError as exc:
        logger.error("cannot restore the last good config: %s", exc)
        return None
    return restored


def show_rules(falco: Workload, params: Mapping[str, Any]) -> dict[str, str]:
    """The show-rules action's results: the loaded rules ``params`` select, and the raw files.

    Raises RulesListingError while Falco is not reachable or not on the charm's config (the
    image's default would list rules the charm never asked for), and when it cannot list them.
    """
    if not falco.can_connect() or not config_is_ours(falco):
        raise RulesListingError(
            "Falco is not reachable yet (no Pebble or no config): retry when active"
        )
    raw = rule_files_text(falco) if params.get("raw") else None
    return show_rules_result(loaded_rules(falco), params, raw)


def loaded_rules(falco: Workload) -> list[LoadedRule]:
    """The rules Falco loads from the live files, ``enabled`` as falco.yaml's selection leaves it.

    Raises RulesListingError when Falco cannot list them, WorkloadError when the container
    cannot run it.
    """
    result = falco.run(
        [*FALCO_COMMAND, "-L", "-o", "json_output=true"], timeout=LIST_RULES_TIMEOUT
    )
    if result.exit_code != 0:
        raise RulesListingError(f"falco -L failed: {first_error_line(result.output)}")
    selection = parse_rules_selection(falco.read(FALCO_CONFIG) or b"")
    return apply_selection(parse_rules_listing(result.stdout), selection)


def rule_files_text(falco: Workload) -> str:
    """The live rule files, each under a ``# ---- path ----`` line, for show-rules ``raw``."""
    parts: list[str] = []
    for path in (K8S_AUDIT_RULES, CHARM_RULES, FALCO_CUSTOM_RULES):
        content = falco.read(path)
        if content is not None:
            parts.append(f"# ---- {path} ----\n{content.decode(errors='replace')}")
    return "\n".join(parts)
