#!/usr/bin/env python3
"""falco-k8s: Falco on the Kubernetes audit stream, as a Juju sidecar charm.

The class only wires events to one reconcile path, statuses and actions: sinks come from
``sink_relations`` and ``alert_sinks``, Falco's own behaviour from ``falco_service``, the
forwarder's from ``forwarder_service``, the cluster side from ``cluster``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import ops

import alert_log_storage
import constants
import falco_service
import forwarder_service
import rules_gate
import state
from apiserver_file import ApiserverFileRecords
from bundle import Bundle, load_bundle
from charms.falco_k8s.v0.gelf import GelfEndpointRequirer
from constants import FORWARDER_PORT  # tests point it at a forwarder of their own
from cos_hook import publish_if_related
from falco_forwarder.config import JujuTopology
from falco_output import RulesListingError
from peer_memory import UnitMemory
from sink_relations import RELATION_READERS, read_sinks
from webhook_certificates import WebhookCertificates
from webhook_config import WebhookAddress, webhook_action_result, webhook_kubeconfig
from webhook_tls import WebhookIdentity, WebhookTls, WebhookTlsError, ca_cert_of
from workload import Workload, WorkloadError

_T = TypeVar("_T")

PEER_RELATION = "falco-peers"
LAST_GOOD_KEY = "last-good-falco"
CHECKED_KEY = "checked-falco-rules"


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
        self._tls: WebhookTls | None = None
        self._tls_usable = True  # False while the relation's certificate cannot be served
        self.falco = Workload(
            self.unit.get_container(constants.FALCO_CONTAINER), constants.FALCO_SERVICE
        )
        self.forwarder = Workload(
            self.unit.get_container(constants.FORWARDER_CONTAINER), constants.FORWARDER_SERVICE
        )
        self.graylog = GelfEndpointRequirer(self, relation_name="graylog")
        self.certificates = WebhookCertificates(self, "certificates")
        self.apiserver_file = ApiserverFileRecords(self.model, PEER_RELATION)
        self.memory = UnitMemory(self.model, PEER_RELATION)
        related = dict.fromkeys(("certificates", *RELATION_READERS, *constants.COS_RELATIONS))
        for event in (
            self.on.install,
            self.on.upgrade_charm,
            self.on.config_changed,
            self.on.update_status,
            self.on.leader_elected,
            self.on.falco_pebble_ready,
            self.on.forwarder_pebble_ready,
            self.on.alert_log_storage_attached,
            self.on[PEER_RELATION].relation_changed,
            self.graylog.on.endpoint_changed,
            self.graylog.on.endpoint_removed,
            *(self.on[name].relation_changed for name in related),
            *(self.on[name].relation_broken for name in related),
            *(self.on[name].relation_joined for name in constants.COS_RELATIONS),
            *(self.on[name].relation_departed for name in constants.COS_RELATIONS),
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.show_rules_action, self._on_show_rules)
        framework.observe(self.on.validate_rules_action, self._on_validate_rules)
        framework.observe(self.on.get_webhook_config_action, self._on_get_webhook_config)
        framework.observe(self.on.remove, self._on_remove)

    def _reconcile(self, event: ops.EventBase) -> None:
        """Converge everything on the current config; record why not when it cannot."""
        self._reconciled = True
        self.unit.set_ports(constants.WEBSERVER_PORT, constants.K8SAUDIT_PORT)
        # Each part is checked on its own, so a bad webhook option does not hold back a rules
        # change, and a bad option never stops the last good config from being restored.
        bundle = self._checked(lambda: load_bundle(self.charm_dir))
        loaded = state.load_config(self.config)
        self._report(blocked=loaded.reason)
        config = loaded.values
        candidate, webhook, sinks = None, None, None
        # A certificate that cannot be served holds back what it feeds: Falco's files, the
        # webhook file, and the check of the apiserver's file against it.
        tls_usable = self._tls_usable = self._read_tls()
        if bundle is not None and loaded.usable_for(state.SINK_OPTIONS):
            sinks = self._checked(lambda: read_sinks(self, config.http_output, self.graylog))
        if bundle is not None and loaded.usable_for(state.FALCO_OPTIONS) and tls_usable:
            candidate = self._checked(lambda: self._falco_files(config, bundle))
        if loaded.usable_for(state.WEBHOOK_OPTIONS) and tls_usable:
            webhook = self._checked(lambda: state.webhook_state(config))
        self._address = self._converge_webhook(webhook)
        if bundle is not None and sinks is not None:
            self._sink_names = tuple(sink.name for sink in sinks)
            topology = JujuTopology(
                self.model.name, self.model.uuid, self.app.name, self.unit.name
            )
            retention = config.alert_log_retention_mb
            storages = self.model.storages[alert_log_storage.STORAGE]
            report = forwarder_service.reconcile(
                self.forwarder,
                sinks,
                topology,
                retention,
                bundle,
                metrics_port=FORWARDER_PORT,
                storage=storages[0].location if storages else None,
            )
            self._report(report.blocked, report.waiting, report.notes)
        publish_if_related(self, event, [self.falco, self.forwarder])
        if not self.falco.can_connect():
            self._statuses.append(ops.WaitingStatus("waiting for Pebble in the falco container"))
            return
        if bundle is None:
            return
        try:
            self._converge_falco(candidate, bundle, tls_usable)
            if self._address is not None and tls_usable:
                kubeconfig = webhook_kubeconfig(self._address, ca_cert_of(self._tls))
                self.falco.push_if_changed(constants.WEBHOOK_CONFIG_FILE, kubeconfig)
        except WorkloadError as exc:
            self._statuses.append(ops.WaitingStatus(f"falco container: {exc}; will retry"))

    def _checked(self, build: Callable[[], _T]) -> _T | None:
        """Run a state builder; an operator-fixable problem becomes a Blocked reason."""
        try:
            return build()
        except state.InvalidStateError as exc:
            self._statuses.append(ops.BlockedStatus(str(exc)))
            return None

    def _report(self, blocked: str = "", waiting: str = "", notes: Iterable[str] = ()) -> None:
        """A part's outcome as statuses; its notes matter only when it has no reason to give."""
        if blocked:
            self._statuses.append(ops.BlockedStatus(blocked))
        if waiting:
            self._statuses.append(ops.WaitingStatus(waiting))
        elif not blocked:
            self._notes.extend(note for note in notes if note)

    def _converge_webhook(self, webhook: state.WebhookState | None) -> WebhookAddress | None:
        """Leader: apply the webhook objects. Any unit: read back where the apiserver sends to."""
        from cluster import AuditWebhookCluster, ClusterError

        leader = self.unit.is_leader()
        try:
            address = AuditWebhookCluster(self.app.name, self.model.name).converge(
                webhook, leader=leader, ca_cert=ca_cert_of(self._tls)
            )
        except ClusterError as exc:
            # Falco keeps running meanwhile: only the cluster side waits for the fix.
            retry = ops.WaitingStatus(f"{exc}; will retry")
            self._statuses.append(retry if exc.retryable else ops.BlockedStatus(str(exc)))
            return None
        if address is None and not leader:
            # A leader gets here only with invalid webhook options, already named as Blocked.
            self._report(waiting="waiting for the leader to create the audit webhook Service")
        elif address is not None:
            # Certificates for the live address; the TLS notes come first: they are about it.
            self._notes[:0] = self.certificates.converge(
                address, self.app.name, self.model.name, self._tls
            )
            served = WebhookIdentity.served(address, self._tls)
            if self._tls_usable and (reason := self.apiserver_file.outdated(served)):
                self._statuses.append(ops.BlockedStatus(reason))
        return address

    def _read_tls(self) -> bool:
        """Read the relation's certificate into ``_tls``; False (and why) if it cannot serve."""
        try:
            self._tls = self.certificates.current()
        except WebhookTlsError as exc:
            self._statuses.append(ops.BlockedStatus(str(exc)))
            return False
        return True

    def _on_remove(self, _: ops.RemoveEvent) -> None:
        """When the application goes away, delete the cluster objects the charm created.

        Not on a scale-down: the next leader would recreate the Service with a new address and
        the kube-apiserver's webhook file would point nowhere.
        """
        if self.unit.is_leader() and self.app.planned_units() == 0:
            from cluster import remove_webhook_objects

            remove_webhook_objects(self.app.name, self.model.name)

    def _falco_files(
        self, config: state.CharmConfig, bundle: Bundle, *, recall: bool = True
    ) -> rules_gate.FalcoFiles:
        """The candidate for the current config; an unchanged rules text is not checked again."""
        remembered = self.memory.recall(CHECKED_KEY) if recall else ""
        wanted = falco_service.candidate(config, bundle, self._tls, remembered)
        if recall:
            self.memory.remember(CHECKED_KEY, wanted.checked)
        self._notes.extend(wanted.notes)
        return wanted.files

    def _converge_falco(
        self, candidate: rules_gate.FalcoFiles | None, bundle: Bundle, tls_usable: bool
    ) -> None:
        """Swap in the candidate if Falco accepts it, and keep Falco running on the last good."""
        outcome = falco_service.converge(
            self.falco,
            candidate,
            bundle,
            self.memory.recall(LAST_GOOD_KEY),
            self._tls,
            tls_usable=tls_usable,
        )
        if outcome.accepted:
            self.memory.remember(LAST_GOOD_KEY, outcome.accepted)
        self._report(outcome.rejected, outcome.problem, [outcome.note])

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if not self._reconciled:
            return
        for status in self._statuses:
            event.add_status(status)
        if self._statuses or self._address is None:  # no address always comes with a reason
            return
        if self.falco.is_running():
            address = self._address
            url = address.url(tls=self._tls is not None)
            parts = [f"audit webhook at {url}", address.reachability_note, *self._notes]
            if self._sink_names:
                parts.append(f"alerts to {', '.join(self._sink_names)}")
            event.add_status(ops.ActiveStatus("; ".join(part for part in parts if part)))
        else:
            event.add_status(ops.MaintenanceStatus("starting Falco"))

    def _on_show_rules(self, event: ops.ActionEvent) -> None:
        """Ask Falco which rules it loaded; results, not stdout, so `juju run` shows them."""
        try:
            results = falco_service.show_rules(self.falco, event.params)
        except (WorkloadError, RulesListingError) as exc:
            event.fail(str(exc))
            return
        event.set_results(results)

    def _on_get_webhook_config(self, event: ops.ActionEvent) -> None:
        """Hand the cluster admin the apiserver side, right by construction."""
        from cluster import AuditWebhookCluster, ClusterError

        try:
            webhook = state.webhook_state(
                state.load_config(self.config).require(state.WEBHOOK_OPTIONS)
            )
            tls = self.certificates.current()
            address = AuditWebhookCluster(self.app.name, self.model.name).read_address()
        except (state.InvalidStateError, ClusterError) as exc:
            event.fail(str(exc))
            return
        if address is None:
            event.fail("the audit webhook Service does not exist yet: is the leader trusted?")
            return
        kubeconfig = webhook_kubeconfig(address, ca_cert_of(tls))
        event.set_results(
            webhook_action_result(self.model.name, self.app.name, kubeconfig, webhook.audit_policy)
        )
        # The admin now holds this file: the status stops asking for it to be replaced, now
        # rather than at the next hook.
        self.apiserver_file.handed_out(WebhookIdentity.served(address, tls))
        self._reconcile(event)

    def _on_validate_rules(self, event: ops.ActionEvent) -> None:
        """Run the config-change gate on demand; apply nothing."""
        try:
            config = state.load_config(self.config).require(state.FALCO_OPTIONS)
            self._tls = self.certificates.current()
            files = self._falco_files(config, load_bundle(self.charm_dir), recall=False)
            result = rules_gate.validate(self.falco, files)
        except state.InvalidStateError as exc:
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
