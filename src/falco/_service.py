"""Falco's own behaviour in its container: converge on a candidate, keep the last good, list rules.

The functions take a `Workload` and plain data (the candidate files, the last good config as
remembered text, the current certificate) and return plain outcomes; `FalcoService` binds them
to the unit's container and memory and reports in the shape the charm's status is made of.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ops

from constants import (
    ALERT_LOG_DIR,
    CHARM_RULES,
    FALCO_CONFIG,
    FALCO_CONFIG_DIR,
    FALCO_CUSTOM_RULES,
    FALCO_SERVICE,
    K8S_AUDIT_RULES,
    PLUGIN_MANIFEST,
)
from falco import _gate as rules_gate
from falco import _reload as falco_reload
from falco._cli_answers import (
    LoadedRule,
    RulesListingError,
    first_error_line,
    parse_rules_listing,
)
from falco._falco_yaml import is_managed
from falco._layer import FALCO_COMMAND, falco_layer
from falco._options import FalcoOptions, falco_state
from falco._rules_listing import apply_selection, parse_rules_selection, show_rules_result
from options import InvalidStateError, load_options
from payload import Payload, manifest_digest
from peer_memory import UnitMemory
from report import Report
from workload import CommandResult, Workload, WorkloadError

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


def candidate(config: FalcoOptions, payload: Payload, remembered: str = "") -> Candidate:
    """The candidate file set for ``config``; InvalidStateError names what the operator must fix.

    Falco always writes its alerts to the alert log, sinks or none: adding the first sink or
    removing the last then only reloads the forwarder, and never touches Falco.
    """
    falco = falco_state(config, payload.shipped_rules, remembered)
    notes: tuple[str, ...] = ()
    if falco.detection_off:
        notes = ("disabled_rules switches off every rule: detection is off",)
    # Falco accepts selections that match nothing silently; pass them on anyway, since the
    # rules may come later, but tell the operator.
    if falco.unmatched:
        logger.warning("disabled_rules entries select no rule: %s", falco.unmatched)
        notes = (*notes, f"disabled_rules matched nothing: {', '.join(falco.unmatched)}")
    files = rules_gate.FalcoFiles(falco.settings, *payload.shipped_rules, falco.custom_rules)
    return Candidate(files, falco.checked, notes)


def converge(
    falco: Workload,
    candidate: rules_gate.FalcoFiles | None,
    payload: Payload,
    last_good: str,
    *,
    unconfirmed: bool = False,
) -> FalcoOutcome:
    """Swap in the candidate if Falco accepts it, and keep Falco running on the last good.

    ``unconfirmed``: Falco never reported the files of the last change (remembered by the
    caller from an earlier outcome's ``confirmed``); the outcome keeps saying so until it does.
    Raises WorkloadError when the container goes away or stalls mid-change: the live files are
    then untouched or complete (each is swapped whole), and the next call converges again.
    """
    falco.sync_tree(payload.plugins, payload.plugins_manifest, manifest_path=PLUGIN_MANIFEST)
    # Falco creates the log file, not its directory: private to the pod's root users.
    falco.ensure_dir(ALERT_LOG_DIR, permissions=0o700)
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
    # Otherwise the live files are the last config Falco accepted, if the charm wrote them.
    live = applied is not None or config_is_ours(falco)
    if not live and last_good:
        applied = _restore(falco, last_good, payload)
        live = changed = applied is not None
    pending = falco_reload.NOT_ASKED if unconfirmed else ""
    if not live:
        return FalcoOutcome(accepted, rejected, pending)
    started = falco.ensure_service(falco_layer(manifest_digest(payload.plugins_manifest)))
    if applied is None or started:
        return FalcoOutcome(accepted, rejected, pending)
    # A running Falco hot-reloads; only its own report says the change landed.
    check = falco_reload.confirm_reload(
        falco, applied.at(FALCO_CONFIG_DIR), changed=changed, unconfirmed=unconfirmed
    )
    return FalcoOutcome(accepted, rejected, check.problem, check.note, check.confirmed)


def _restore(falco: Workload, last_good: str, payload: Payload) -> rules_gate.FalcoFiles | None:
    """Bring back the last config Falco accepted.

    For a fresh container (pod rescheduled) while the current config is refused: better than
    leaving the cluster unwatched.
    """
    try:
        restored = rules_gate.FalcoFiles.from_json(last_good, payload)
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


class FalcoService:
    """Falco in this unit's container: its files, its service, and what the unit remembers of it.

    What Falco last accepted and the outcome of the last rules check are kept in the unit's
    peer data, so a rescheduled pod restores the last good config and unchanged rules are not
    checked again.
    """

    LAST_GOOD_KEY = "last-good-falco"
    CHECKED_KEY = "checked-falco-rules"
    UNCONFIRMED_KEY = "unconfirmed-falco-change"

    def __init__(self, container: ops.Container, memory: UnitMemory):
        self.workload = Workload(container, FALCO_SERVICE)
        self._memory = memory

    def converge(self, config: ops.ConfigData, payload: Payload | None) -> Report:
        """Run Falco on the current options; a bad option or refused rules keep the last good."""
        if not self.workload.can_connect():
            return Report(waiting="waiting for Pebble in the falco container")
        if payload is None:
            return Report()
        refused, notes, wanted = Report(), (), None
        try:
            found = self._candidate(config, payload)
            wanted, notes = found.files, found.notes
        except InvalidStateError as exc:
            refused = Report.refused(exc)
        try:
            outcome = converge(
                self.workload,
                wanted,
                payload,
                self._memory.recall(self.LAST_GOOD_KEY),
                unconfirmed=bool(self._memory.recall(self.UNCONFIRMED_KEY)),
            )
        except WorkloadError as exc:
            return Report(waiting=f"falco container: {exc}; will retry")
        if outcome.accepted:
            self._memory.remember(self.LAST_GOOD_KEY, outcome.accepted)
        if outcome.confirmed is not None:
            # A change Falco never confirmed keeps every later hook Waiting until it does.
            self._memory.remember(self.UNCONFIRMED_KEY, "" if outcome.confirmed else "true")
        if refused.blocked:
            return refused
        if not outcome.problem and not self.workload.is_running():
            return Report(outcome.rejected, maintenance="starting Falco")
        return Report(outcome.rejected, waiting=outcome.problem, notes=(*notes, outcome.note))

    def validate(self, config: ops.ConfigData, payload: Payload) -> CommandResult:
        """Run the config-change gate on the current options and apply nothing.

        Raises InvalidStateError for a bad option, GateRejectedError when Falco refuses the
        rules, WorkloadError when the container cannot run the check.
        """
        files = self._candidate(config, payload, recall=False).files
        return rules_gate.validate(self.workload, files)

    def show_rules(self, params: Mapping[str, Any]) -> dict[str, str]:
        """The show-rules action's results (see `show_rules`)."""
        return show_rules(self.workload, params)

    def _candidate(
        self, config: ops.ConfigData, payload: Payload, *, recall: bool = True
    ) -> Candidate:
        """The candidate for the current options; an unchanged rules text is not checked again."""
        options = load_options(FalcoOptions, config)
        remembered = self._memory.recall(self.CHECKED_KEY) if recall else ""
        found = candidate(options, payload, remembered)
        if recall:
            self._memory.remember(self.CHECKED_KEY, found.checked)
        return found
