#!/usr/bin/env python3
"""falco-k8s: Falco on the Kubernetes audit stream, as a Juju sidecar charm.

The class only wires events to one reconcile path; what to build lives in the renderers,
how to touch Pebble in ``workload``, how to gate Falco changes in ``rules_gate``.
"""

from __future__ import annotations

import json
import logging

import ops
import pydantic

import rules_gate
from constants import (
    ALERT_LOG,
    BUNDLE_DIR,
    FALCO_CONFIG,
    FALCO_CONTAINER,
    FALCO_CUSTOM_RULES,
    FALCO_SERVICE,
    K8S_AUDIT_RULES,
    K8SAUDIT_PATH,
    K8SAUDIT_PORT,
    PLUGIN_FILES,
    PLUGIN_MANIFEST,
    STOCK_RULES_FILE,
    WEBSERVER_PORT,
)
from custom_rules import first_error_line
from falco_config import FalcoSettings
from pebble_layers import FALCO_COMMAND, falco_layer
from rules_listing import RulesListingError, filter_rules, parse_rules_listing
from state import (
    CharmConfig,
    FalcoState,
    InvalidStateError,
    describe_validation_error,
    falco_state,
)
from workload import Workload, WorkloadError

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


class FalcoK8sCharm(ops.CharmBase):
    """Runs Falco in audit-only mode and keeps it converged on config and relations."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # Filled by the reconcile. Hooks that do not reconcile (actions) leave the unit status
        # as the last reconcile set it.
        self._reconciled = False
        self._statuses: list[ops.StatusBase] = []
        self.falco = Workload(self.unit.get_container(FALCO_CONTAINER), FALCO_SERVICE)
        for event in (
            self.on.install,
            self.on.upgrade_charm,
            self.on.config_changed,
            self.on.update_status,
            self.on.leader_elected,
            self.on.falco_pebble_ready,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.show_rules_action, self._on_show_rules)
        framework.observe(self.on.validate_rules_action, self._on_validate_rules)

    # -- the one reconcile path ---------------------------------------------------------------

    def _reconcile(self, _: ops.EventBase) -> None:
        """Converge everything on the current config; record why not when it cannot."""
        self._reconciled = True
        self.unit.set_ports(WEBSERVER_PORT, K8SAUDIT_PORT)
        try:
            config = self._config()
            falco = falco_state(config)
        except InvalidStateError as exc:
            self._statuses.append(ops.BlockedStatus(str(exc)))
            return
        if not self.falco.can_connect():
            self._statuses.append(ops.WaitingStatus("waiting for Pebble in the falco container"))
            return
        try:
            self._reconcile_falco(config, falco)
        except (WorkloadError, ops.pebble.ConnectionError) as exc:
            # The container went away or stalled mid-change: the live files are untouched or
            # complete (each is swapped whole), and the next event converges again.
            self._statuses.append(ops.WaitingStatus(f"falco container: {exc}; will retry"))

    def _config(self) -> CharmConfig:
        try:
            return self.load_config(CharmConfig)
        except pydantic.ValidationError as exc:
            raise InvalidStateError(describe_validation_error(exc)) from None

    def _reconcile_falco(self, config: CharmConfig, falco: FalcoState) -> None:
        files = self._falco_files(config, falco)
        if files is None:
            return
        try:
            rules_gate.apply(self.falco, files)
        except rules_gate.GateRejectedError as exc:
            what = "custom_rules" if falco.custom_rules else "falco.yaml"
            self._statuses.append(ops.BlockedStatus(f"{what} rejected by Falco: {exc}"))
        # Whatever the gate said, the live files are a config Falco accepted (or none yet).
        if self.falco.read(FALCO_CONFIG) is not None:
            self.falco.ensure_service(falco_layer())
            self._rotate_alert_log(config.alert_log_max_mb * MIB)

    def _falco_files(self, config: CharmConfig, falco: FalcoState) -> rules_gate.FalcoFiles | None:
        """The candidate file set, after installing the plugins it needs."""
        bundle = self.charm_dir / BUNDLE_DIR
        missing = [
            name for name in (*PLUGIN_FILES, STOCK_RULES_FILE) if not (bundle / name).is_file()
        ]
        if missing:
            self._statuses.append(
                ops.BlockedStatus(
                    f"charm package lacks {', '.join(missing)}: rebuild it with charmcraft pack"
                )
            )
            return None
        self.falco.sync_tree(
            {path: (bundle / name).read_bytes() for name, path in PLUGIN_FILES.items()},
            manifest=PLUGIN_MANIFEST,
        )
        settings = FalcoSettings(
            rules_files=(),  # laid out per location by the gate
            priority=falco.priority,
            http_output_url=config.http_output or None,
            rules_selection=falco.disabled.falco_selection(),
        )
        return rules_gate.FalcoFiles(
            settings=settings,
            stock_rules=(bundle / STOCK_RULES_FILE).read_bytes(),
            custom_rules=falco.custom_rules,
        )

    def _rotate_alert_log(self, max_bytes: int) -> None:
        """Keep the alert log under its cap: rename it to .1, then have Falco reopen it."""
        size = self.falco.file_size(ALERT_LOG)
        if size is None or size <= max_bytes:
            return
        result = self.falco.run(["mv", "-f", ALERT_LOG, f"{ALERT_LOG}.1"], timeout=30)
        if result.exit_code != 0:
            logger.warning("could not rotate %s: %s", ALERT_LOG, result.output)
            return
        # Falco keeps writing to the renamed file (never a deleted one) until SIGUSR1 reopens.
        self.falco.signal("SIGUSR1")
        logger.info("rotated %s at %d bytes", ALERT_LOG, size)

    # -- status ---------------------------------------------------------------------------------

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if not self._reconciled:
            return
        for status in self._statuses:
            event.add_status(status)
        if self._statuses:
            return
        if self.falco.is_running():
            event.add_status(ops.ActiveStatus(f"audit webhook on :{K8SAUDIT_PORT}{K8SAUDIT_PATH}"))
        else:
            event.add_status(ops.MaintenanceStatus("starting Falco"))

    # -- actions ----------------------------------------------------------------------------------

    def _on_show_rules(self, event: ops.ActionEvent) -> None:
        """Ask Falco which rules it loaded; results, not stdout, so `juju run` shows them."""
        if not self.falco.can_connect() or self.falco.read(FALCO_CONFIG) is None:
            event.fail("Falco is not reachable yet (no Pebble or no config): retry when active")
            return
        try:
            result = self.falco.run([*FALCO_COMMAND, "-L", "-o", "json_output=true"], timeout=60)
            if result.exit_code != 0:
                event.fail(f"falco -L failed: {first_error_line(result.output)}")
                return
            rules = filter_rules(
                parse_rules_listing(result.stdout),
                name=str(event.params.get("name", "")),
                tag=str(event.params.get("tag", "")),
                minimum_priority=str(event.params.get("minimum-priority", "")),
            )
        except (WorkloadError, RulesListingError) as exc:
            event.fail(str(exc))
            return
        results: dict[str, str] = {
            "count": str(len(rules)),
            "rules": json.dumps([rule.as_result() for rule in rules], indent=1),
        }
        if event.params.get("raw"):
            results["raw"] = self._rule_files_text()
        event.set_results(results)

    def _rule_files_text(self) -> str:
        parts: list[str] = []
        for path in (K8S_AUDIT_RULES, FALCO_CUSTOM_RULES):
            content = self.falco.read(path)
            if content is not None:
                parts.append(f"# ---- {path} ----\n{content.decode(errors='replace')}")
        return "\n".join(parts)

    def _on_validate_rules(self, event: ops.ActionEvent) -> None:
        """Run the config-change gate on demand; apply nothing."""
        try:
            config = self._config()
            files = self._falco_files(config, falco_state(config))
            if files is None:
                event.fail(
                    "charm package lacks the Falco plugins: rebuild it with charmcraft pack"
                )
                return
            result = rules_gate.validate(self.falco, files)
        except InvalidStateError as exc:
            event.set_results({"valid": "false", "errors": str(exc)})
            event.fail(str(exc))
            return
        except rules_gate.GateRejectedError as exc:
            event.set_results({"valid": "false", "errors": exc.output})
            event.fail(f"rejected by Falco: {exc}")
            return
        except WorkloadError as exc:
            event.fail(f"could not run the check: {exc}")
            return
        event.set_results({"valid": "true", "output": result.output})


if __name__ == "__main__":  # pragma: nocover
    ops.main(FalcoK8sCharm)
