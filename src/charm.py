#!/usr/bin/env python3
"""falco-k8s: Falco on the Kubernetes audit stream, as a Juju sidecar charm.

The class only wires: events to one reconcile, the parts' reports to one status, actions to
the part that answers them. The parts are the wings: ``webhook`` (the apiserver's side),
``falco`` (Falco in its container), ``sinks`` (where alerts go, and the forwarder) and ``cos``.
"""

from __future__ import annotations

import ops

import constants
from cos import publish_if_related
from falco import FalcoService, GateRejectedError, RulesListingError
from options import InvalidStateError
from payload import Payload, load_payload
from peer_memory import UnitMemory
from report import Report, unit_status
from sinks import AlertSinks
from webhook import AuditWebhook
from workload import WorkloadError

_STATUSES: dict[str, type[ops.StatusBase]] = {
    "blocked": ops.BlockedStatus,
    "maintenance": ops.MaintenanceStatus,
    "waiting": ops.WaitingStatus,
    "active": ops.ActiveStatus,
}


class FalcoK8sCharm(ops.CharmBase):
    """Runs Falco in audit-only mode and keeps it converged on config and relations."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # Filled by the reconcile. Hooks that do not reconcile (actions) leave the unit status
        # as the last reconcile set it.
        self._reports: list[Report] | None = None
        memory = UnitMemory(self.model, constants.PEER_RELATION)
        self.falco = FalcoService(self.unit.get_container(constants.FALCO_CONTAINER), memory)
        self.sinks = AlertSinks(self)
        self.webhook = AuditWebhook(self, memory)
        related = (constants.CERTIFICATES_RELATION, *constants.COS_RELATIONS)
        for event in (
            self.on.install,
            self.on.upgrade_charm,
            self.on.config_changed,
            self.on.update_status,
            self.on.leader_elected,
            self.on.falco_pebble_ready,
            self.on.forwarder_pebble_ready,
            self.on.alert_log_storage_attached,
            self.on[constants.PEER_RELATION].relation_changed,
            *self.sinks.events(),
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
        framework.observe(self.on.rotate_webhook_token_action, self._on_rotate_webhook_token)
        framework.observe(self.on.secret_remove, self._on_secret_remove)
        framework.observe(self.on.remove, self._on_remove)

    def _reconcile(self, event: ops.EventBase) -> None:
        """Converge every part on the current config; each reports why not when it cannot."""
        self.unit.set_ports(constants.WEBSERVER_PORT, constants.WEBHOOK_PORT)
        payload, missing = self._payload()
        # Falco first: k8saudit leaves the webhook port for its loopback one, the intake takes it.
        falco = self.falco.converge(self.config, payload)
        webhook = self.webhook.converge(self.config, payload)
        delivery = self.sinks.converge(payload)
        cos = publish_if_related(self, event, [self.falco.workload, self.sinks.forwarder])
        self._reports = [missing, webhook, falco, delivery, cos]

    def _payload(self) -> tuple[Payload | None, Report]:
        """What the charm carries into its containers, or why it cannot."""
        try:
            return load_payload(self.charm_dir), Report()
        except InvalidStateError as exc:
            return None, Report.refused(exc)

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if self._reports is None:
            return
        kind, message = unit_status(self._reports)
        event.add_status(_STATUSES[kind](message))

    def _on_remove(self, _: ops.RemoveEvent) -> None:
        self.webhook.remove()

    def _on_secret_remove(self, event: ops.SecretRemoveEvent) -> None:
        """No unit reads this revision of one of the app's secrets any more: it goes.

        With a certificates provider related, its library observes this event too and removes
        the revision of any secret; a second removal of the same revision would fail the hook.
        While the provider's data does not parse the library is not set up, so the charm does it.
        """
        if self.webhook.certificates.library_observing:
            return
        try:
            event.secret.get_info()  # juju/juju#19036: the secret itself may be gone already
        except ops.SecretNotFoundError:
            return
        event.remove_revision()

    def _on_show_rules(self, event: ops.ActionEvent) -> None:
        """Ask Falco which rules it loaded; results, not stdout, so `juju run` shows them."""
        try:
            event.set_results(self.falco.show_rules(event.params))
        except (WorkloadError, RulesListingError) as exc:
            event.fail(str(exc))

    def _on_get_webhook_config(self, event: ops.ActionEvent) -> None:
        """Hand the cluster admin the apiserver side, right by construction."""
        try:
            event.set_results(self.webhook.handout(self.config))
        except InvalidStateError as exc:
            event.fail(str(exc))
            return
        # The status stops asking for the file to be replaced now, not at the next hook.
        self._reconcile(event)

    def _on_rotate_webhook_token(self, event: ops.ActionEvent) -> None:
        """A new webhook token; the intake takes it at once, the apiserver with its new file."""
        try:
            minutes = int(event.params.get("keep-previous-minutes", 0))
            event.set_results(self.webhook.rotate_token(minutes))
        except InvalidStateError as exc:
            event.fail(str(exc))
            return
        self._reconcile(event)

    def _on_validate_rules(self, event: ops.ActionEvent) -> None:
        """Run the config-change gate on demand; apply nothing."""
        try:
            result = self.falco.validate(self.config, load_payload(self.charm_dir))
        except InvalidStateError as exc:
            event.set_results({"valid": "false", "errors": str(exc)})
            event.fail(str(exc))
            return
        except GateRejectedError as exc:
            event.set_results({"valid": "false", "errors": exc.output})
            event.fail(f"rejected by Falco: {exc}")
            return
        except WorkloadError as exc:
            event.fail(f"could not run the check: {exc}")
            return
        event.set_results({"valid": "true", "output": result.output})


if __name__ == "__main__":  # pragma: nocover
    ops.main(FalcoK8sCharm)
