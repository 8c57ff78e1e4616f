#!/usr/bin/env python3
"""falco-k8s: Falco on the Kubernetes audit stream, as a Juju sidecar charm.

The class only wires events to one reconcile path; what to build lives in the renderers,
how to touch Pebble in ``workload``, how to gate Falco changes in ``rules_gate``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TypeVar

import ops
import pydantic

import rules_gate
from bundle import Bundle, load_bundle, manifest_digest
from charms.falco_k8s.v0.gelf import GelfEndpointError, GelfEndpointRequirer
from constants import (
    ALERT_LOG,
    COS_RELATIONS,
    FALCO_CONFIG,
    FALCO_CONTAINER,
    FALCO_CUSTOM_RULES,
    FALCO_SERVICE,
    FORWARDER_CONFIG,
    FORWARDER_CONTAINER,
    FORWARDER_PKG_DIR,
    FORWARDER_PORT,
    FORWARDER_SERVICE,
    FORWARDER_URL,
    K8S_AUDIT_RULES,
    K8SAUDIT_PORT,
    LOGGING_RELATION,
    MIB,
    PLUGIN_MANIFEST,
    WEBHOOK_CONFIG_FILE,
    WEBSERVER_PORT,
)
from cos_sinks import cos_sinks
from custom_rules import first_error_line
from falco_config import FalcoSettings, is_managed
from falco_forwarder.config import (
    FORMAT_FALCO_JSON,
    FORMAT_GELF,
    ConfigError,
    JujuTopology,
    SinkConfig,
    config_from_dict,
    config_to_dict,
)
from falcosidekick import falcosidekick_endpoint
from pebble_layers import FALCO_COMMAND, falco_layer, forwarder_layer
from rules_listing import RulesListingError, filter_rules, parse_rules_listing
from state import (
    FALCO_OPTIONS,
    SINK_OPTIONS,
    WEBHOOK_OPTIONS,
    CharmConfig,
    InvalidStateError,
    LoadedConfig,
    WebhookState,
    falco_state,
    forwarder_config,
    http_output_sink,
    webhook_state,
    without_invalid,
)
from webhook_config import WebhookAddress, webhook_action_result, webhook_kubeconfig
from workload import Workload, WorkloadError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

PEER_RELATION = "falco-peers"
LAST_GOOD_KEY = "last-good-falco"


# Juju passes each action result as one command-line argument, which Linux caps at 128 KiB.
ACTION_RESULT_MAX_CHARS = 100_000


def _fit_result(key: str, text: str) -> dict[str, str]:
    """One action result, cut to what Juju can carry and saying so rather than failing."""
    if len(text) <= ACTION_RESULT_MAX_CHARS:
        return {key: text}
    return {key: text[:ACTION_RESULT_MAX_CHARS], f"{key}-truncated": f"{len(text)} characters"}


class FalcoK8sCharm(ops.CharmBase):
    """Runs Falco in audit-only mode and keeps it converged on config and relations."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # Filled by the reconcile. Hooks that do not reconcile (actions) leave the unit status
        # as the last reconcile set it.
        self._reconciled = False
        self._statuses: list[ops.StatusBase] = []
        self._address: WebhookAddress | None = None
        self._notes: list[str] = []  # worth a look, not worth blocking for
        self._sink_names: tuple[str, ...] = ()
        self.falco = Workload(self.unit.get_container(FALCO_CONTAINER), FALCO_SERVICE)
        self.forwarder = Workload(self.unit.get_container(FORWARDER_CONTAINER), FORWARDER_SERVICE)
        self.graylog = GelfEndpointRequirer(self, relation_name="graylog")
        for event in (
            self.on.install,
            self.on.upgrade_charm,
            self.on.config_changed,
            self.on.update_status,
            self.on.leader_elected,
            self.on.falco_pebble_ready,
            self.on.forwarder_pebble_ready,
            self.on.alerts_spool_storage_attached,
            self.graylog.on.endpoint_changed,
            self.graylog.on.endpoint_removed,
            self.on.falcosidekick_relation_changed,
            self.on.falcosidekick_relation_broken,
            *(
                getattr(self.on, f"{name.replace('-', '_')}_relation_{kind}")
                for name in COS_RELATIONS
                for kind in ("joined", "changed", "departed", "broken")
            ),
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.show_rules_action, self._on_show_rules)
        framework.observe(self.on.validate_rules_action, self._on_validate_rules)
        framework.observe(self.on.get_webhook_config_action, self._on_get_webhook_config)
        framework.observe(self.on.remove, self._on_remove)

    # -- the one reconcile path ---------------------------------------------------------------

    def _reconcile(self, event: ops.EventBase) -> None:
        """Converge everything on the current config; record why not when it cannot."""
        self._reconciled = True
        self.unit.set_ports(WEBSERVER_PORT, K8SAUDIT_PORT)
        # Each part is checked on its own, so a bad webhook option does not hold back a rules
        # change, and a bad option never stops the last good config from being restored.
        bundle = self._checked(lambda: load_bundle(self.charm_dir))
        loaded = self._config()
        if loaded.reason:
            self._statuses.append(ops.BlockedStatus(loaded.reason))
        config = loaded.values
        candidate, webhook, sinks = None, None, None
        if bundle is not None and loaded.usable_for(SINK_OPTIONS):
            sinks = self._checked(lambda: self._sinks(config))
        if bundle is not None and loaded.usable_for(FALCO_OPTIONS):
            candidate = self._checked(lambda: self._falco_files(config, bundle))
        if loaded.usable_for(WEBHOOK_OPTIONS):
            webhook = self._checked(lambda: webhook_state(config))
        self._address = self._converge_webhook(webhook)
        if bundle is not None and sinks is not None:
            self._converge_forwarder(config, sinks, bundle)
        self._publish_cos(event)
        if not self.falco.can_connect():
            self._statuses.append(ops.WaitingStatus("waiting for Pebble in the falco container"))
            return
        if bundle is None:
            return
        try:
            self.falco.sync_tree(
                bundle.plugins, bundle.plugins_manifest, manifest_path=PLUGIN_MANIFEST
            )
            self._converge_falco(candidate, bundle)
            if self._address is not None:
                self.falco.push_if_changed(WEBHOOK_CONFIG_FILE, webhook_kubeconfig(self._address))
            # A bad alert_log_max_mb is at its default here: the log is never left uncapped.
            self._rotate_alert_log(config.alert_log_max_mb * MIB)
        except WorkloadError as exc:
            # The container went away or stalled mid-change: the live files are untouched or
            # complete (each is swapped whole), and the next event converges again.
            self._statuses.append(ops.WaitingStatus(f"falco container: {exc}; will retry"))

    def _checked(self, build: Callable[[], _T]) -> _T | None:
        """Run a state builder; an operator-fixable problem becomes a Blocked reason."""
        try:
            return build()
        except InvalidStateError as exc:
            self._statuses.append(ops.BlockedStatus(str(exc)))
            return None

    def _config(self) -> LoadedConfig:
        """The config; invalid options are left at their defaults and named in ``reason``."""
        try:
            return LoadedConfig(self.load_config(CharmConfig))
        except pydantic.ValidationError as exc:
            raw = {key.replace("-", "_"): value for key, value in self.config.items()}
            return without_invalid(raw, exc)

    def _converge_webhook(self, webhook: WebhookState | None) -> WebhookAddress | None:
        """Leader: apply the webhook objects. Any unit: read back where the apiserver sends to."""
        from cluster import AuditWebhookCluster, ClusterError

        cluster = AuditWebhookCluster(self.app.name, self.model.name)
        try:
            if self.unit.is_leader() and webhook is not None:
                return cluster.apply(
                    webhook.spec,
                    audit_policy=webhook.audit_policy,
                    allowed_cidrs=webhook.allowed_cidrs,
                )
            address = cluster.read_address()
        except ClusterError as exc:
            # Falco keeps running meanwhile: only the cluster side waits for the fix.
            if exc.retryable:
                self._statuses.append(ops.WaitingStatus(f"{exc}; will retry"))
            else:
                self._statuses.append(ops.BlockedStatus(str(exc)))
            return None
        if address is None and not self.unit.is_leader():
            # A leader gets here only with invalid webhook options, already named as Blocked.
            self._statuses.append(
                ops.WaitingStatus("waiting for the leader to create the audit webhook Service")
            )
        return address

    def _on_remove(self, _: ops.RemoveEvent) -> None:
        """When the application goes away, delete the cluster objects the charm created.

        Not on a scale-down: the next leader would recreate the Service with a new address and
        the kube-apiserver's webhook file would point nowhere.
        """
        if not self.unit.is_leader() or self.app.planned_units() > 0:
            return
        from cluster import AuditWebhookCluster, ClusterError

        try:
            AuditWebhookCluster(self.app.name, self.model.name).remove()
        except ClusterError as exc:
            logger.error("could not delete the audit webhook objects: %s", exc)

    def _sinks(self, config: CharmConfig) -> tuple[SinkConfig, ...]:
        """Every destination alerts go to, from config and relations."""
        sinks = list(http_output_sink(config))
        try:
            endpoints = self.graylog.endpoints()
        except GelfEndpointError as exc:
            raise InvalidStateError(str(exc)) from None
        sinks += [
            SinkConfig("graylog", FORMAT_GELF, e.url, e.headers, e.ca_cert, e.max_message_bytes)
            for e in endpoints
        ]
        for relation in self.model.relations["falcosidekick"]:
            if endpoint := falcosidekick_endpoint(relation):
                sinks.append(
                    SinkConfig(
                        "falcosidekick", FORMAT_FALCO_JSON, endpoint.url, ca_cert=endpoint.ca_cert
                    )
                )
        sinks += cos_sinks(self)
        return tuple(sinks)

    def _publish_cos(self, event: ops.EventBase) -> None:
        """Scrape jobs, rules, dashboards and log forwarding; COS code loads only if related."""
        logging_gone = (
            isinstance(event, ops.RelationBrokenEvent) and event.relation.name == LOGGING_RELATION
        )
        if logging_gone or any(self.model.relations[name] for name in COS_RELATIONS):
            from cos import publish_cos

            publish_cos(self, [self.falco, self.forwarder])

    def _converge_forwarder(
        self, config: CharmConfig, sinks: tuple[SinkConfig, ...], bundle: Bundle
    ) -> None:
        """Run the forwarder on the current sinks; a sink change reloads it and spares Falco."""
        self._sink_names = tuple(sink.name for sink in sinks)
        if not self.forwarder.can_connect():
            if sinks:
                self._statuses.append(
                    ops.WaitingStatus("waiting for Pebble in the forwarder container")
                )
            return
        topology = JujuTopology(self.model.name, self.model.uuid, self.app.name, self.unit.name)
        settings = config_to_dict(forwarder_config(sinks, topology, config.forwarder_spool_max_mb))
        try:
            config_from_dict(settings)  # the forwarder's own check, e.g. of a relation's CA
        except ConfigError as exc:
            self._statuses.append(ops.BlockedStatus(f"alert sinks: {exc}"))
            return
        text = json.dumps(settings, indent=1, sort_keys=True)
        try:
            self.forwarder.sync_tree(
                bundle.forwarder,
                bundle.forwarder_manifest,
                manifest_path=f"{FORWARDER_PKG_DIR}/.manifest",
            )
            # Mode 0600: the only file that may hold the sinks' auth headers.
            reconfigured = self.forwarder.push_if_changed(
                FORWARDER_CONFIG, text, permissions=0o600
            )
            started = self.forwarder.ensure_service(
                forwarder_layer(manifest_digest(bundle.forwarder_manifest))
            )
            if reconfigured and not started:
                # Reload in place: Falco does not retry, so a restart would lose alerts.
                self.forwarder.signal("SIGHUP")
        except WorkloadError as exc:
            self._statuses.append(ops.WaitingStatus(f"forwarder container: {exc}; will retry"))
            return
        # A forwarder started or reloading just now has nothing to tell about these sinks yet.
        if sinks and not started and not reconfigured:
            self._notes.extend(self._delivery_notes())

    def _delivery_notes(self) -> list[str]:
        """Failing sinks and lost alerts, from the forwarder's own counts."""
        from delivery_status import delivery_notes, read_delivery

        delivery = read_delivery(FORWARDER_PORT)
        if delivery is None:
            logger.warning("the forwarder's metrics did not answer; delivery state unknown")
            return ["forwarder not answering"]
        return delivery_notes(delivery, self._sink_names)

    def _falco_files(self, config: CharmConfig, bundle: Bundle) -> rules_gate.FalcoFiles:
        """The candidate file set for the current config.

        Falco always posts its alerts to the forwarder, sinks or none: adding the first sink or
        removing the last then only reloads the forwarder, and never touches Falco.
        """
        falco = falco_state(config)
        settings = FalcoSettings(
            priority=falco.priority,
            http_output_url=FORWARDER_URL,
            rules_selection=falco.disabled.falco_selection(),
        )
        # Falco accepts selections that match nothing silently; pass them on anyway, since the
        # rules may come later, but tell the operator.
        if unmatched := falco.disabled.unmatched(bundle.stock_rules.decode(), falco.custom_rules):
            logger.warning("disabled_rules entries select no rule: %s", unmatched)
            self._notes.append(f"disabled_rules matched nothing: {', '.join(unmatched)}")
        return rules_gate.FalcoFiles(settings, bundle.stock_rules, falco.custom_rules)

    def _converge_falco(self, candidate: rules_gate.FalcoFiles | None, bundle: Bundle) -> None:
        """Swap in the candidate if Falco accepts it, and keep Falco running on the last good."""
        live = False
        if candidate is not None:
            try:
                rules_gate.apply(self.falco, candidate)
                self._remember_last_good(candidate.to_json())
                live = True
            except rules_gate.GateRejectedError as exc:
                what = "custom_rules" if exc.about_custom_rules else "falco.yaml"
                self._statuses.append(ops.BlockedStatus(f"{what} rejected by Falco: {exc}"))
        # Otherwise the live files are the last config Falco accepted, if the charm wrote them.
        live = live or self._falco_config_is_ours()
        if not live and (last_good := self._last_good()):
            # A fresh container (pod rescheduled) while the current config is refused: bring
            # back the last config Falco accepted rather than leave the cluster unwatched.
            try:
                rules_gate.apply(self.falco, rules_gate.FalcoFiles.from_json(last_good, bundle))
                live = True
            except rules_gate.GateRejectedError as exc:
                logger.error("last good config no longer accepted by Falco: %s", exc.output)
            except ValueError as exc:
                logger.error("cannot restore the last good config: %s", exc)
        if live:
            self.falco.ensure_service(falco_layer(manifest_digest(bundle.plugins_manifest)))

    def _falco_config_is_ours(self) -> bool:
        """Whether the live falco.yaml is one the charm wrote, not the image's own default."""
        live = self.falco.read(FALCO_CONFIG)
        return live is not None and is_managed(live)

    def _last_good(self) -> str:
        """The last candidate Falco accepted on this unit (JSON), or "" if none is known."""
        peers = self.model.get_relation(PEER_RELATION)
        return peers.data[self.unit].get(LAST_GOOD_KEY, "") if peers else ""

    def _remember_last_good(self, text: str) -> None:
        """Keep it in this unit's peer databag: the controller holds it across pod restarts."""
        peers = self.model.get_relation(PEER_RELATION)
        if peers is not None and peers.data[self.unit].get(LAST_GOOD_KEY) != text:
            peers.data[self.unit][LAST_GOOD_KEY] = text

    def _rotate_alert_log(self, max_bytes: int) -> None:
        """Keep the alert log under its cap: rename it to .1, then have Falco reopen it.

        Only while Falco runs: it must reopen its file right after the rename, or it would keep
        writing to falco.log.1 with no cap at all.
        """
        size = self.falco.file_size(ALERT_LOG)
        if size is None or size <= max_bytes or not self.falco.is_running():
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
        if self._statuses or self._address is None:  # no address always comes with a reason
            return
        if self.falco.is_running():
            parts = [f"audit webhook at {self._address.server_url}", *self._notes]
            if self._sink_names:
                parts.append(f"alerts to {', '.join(self._sink_names)}")
            event.add_status(ops.ActiveStatus("; ".join(parts)))
        else:
            event.add_status(ops.MaintenanceStatus("starting Falco"))

    # -- actions ----------------------------------------------------------------------------------

    def _on_show_rules(self, event: ops.ActionEvent) -> None:
        """Ask Falco which rules it loaded; results, not stdout, so `juju run` shows them."""
        try:
            if not self.falco.can_connect() or not self._falco_config_is_ours():
                event.fail(
                    "Falco is not reachable yet (no Pebble or no config): retry when active"
                )
                return
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
            results = {"count": str(len(rules))}
            results.update(
                _fit_result("rules", json.dumps([rule.as_result() for rule in rules], indent=1))
            )
            if event.params.get("raw"):
                results.update(_fit_result("raw", self._rule_files_text()))
        except (WorkloadError, RulesListingError) as exc:
            event.fail(str(exc))
            return
        event.set_results(results)

    def _rule_files_text(self) -> str:
        parts: list[str] = []
        for path in (K8S_AUDIT_RULES, FALCO_CUSTOM_RULES):
            content = self.falco.read(path)
            if content is not None:
                parts.append(f"# ---- {path} ----\n{content.decode(errors='replace')}")
        return "\n".join(parts)

    def _on_get_webhook_config(self, event: ops.ActionEvent) -> None:
        """Hand the cluster admin the apiserver side, right by construction."""
        from cluster import AuditWebhookCluster, ClusterError

        try:
            webhook = webhook_state(self._config().require(WEBHOOK_OPTIONS))
            address = AuditWebhookCluster(self.app.name, self.model.name).read_address()
        except (InvalidStateError, ClusterError) as exc:
            event.fail(str(exc))
            return
        if address is None:
            event.fail("the audit webhook Service does not exist yet: is the leader trusted?")
            return
        event.set_results(
            webhook_action_result(
                self.model.name, self.app.name, webhook_kubeconfig(address), webhook.audit_policy
            )
        )

    def _on_validate_rules(self, event: ops.ActionEvent) -> None:
        """Run the config-change gate on demand; apply nothing."""
        try:
            config = self._config().require(FALCO_OPTIONS)
            files = self._falco_files(config, load_bundle(self.charm_dir))
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
