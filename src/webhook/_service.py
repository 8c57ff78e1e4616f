"""The apiserver's side as one service: cluster objects, the certificate, the admin's file.

The leader keeps the Service, ConfigMap and NetworkPolicy converged; every unit reads back the
live address, asks for a certificate naming it, and tells whether the file the admin holds is
still the one Falco serves for. lightkube loads only here, when the cluster is touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ops

from constants import CERTIFICATES_RELATION, PEER_RELATION
from options import InvalidStateError, load_options
from report import Report
from webhook._apiserver_file import ApiserverFileRecords
from webhook._apiserver_side import webhook_action_result, webhook_kubeconfig
from webhook._certificates import WebhookCertificates
from webhook._options import WebhookOptions, webhook_state
from webhook._tls import WebhookIdentity, WebhookTls, ca_cert_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookOutcome:
    """What converging the webhook found, and what Falco needs from it."""

    report: Report
    tls: WebhookTls | None = None
    """The certificate k8saudit serves; None while the webhook is plain HTTP."""
    tls_usable: bool = True
    """False while the relation's certificate cannot be served: it holds back Falco's files."""
    kubeconfig: str | None = None
    """The apiserver's webhook file for the live address, once there is one."""

    @property
    def webhook_pem(self) -> bytes | None:
        """k8saudit's certificate, chain and key, or None for plain HTTP."""
        return self.tls.pem if self.tls is not None else None


class AuditWebhook:
    """The webhook of one application: its objects, its certificate, the admin's file."""

    def __init__(self, charm: ops.CharmBase):
        self._app = charm.app
        self._unit = charm.unit
        self._model = charm.model
        self.certificates = WebhookCertificates(charm, CERTIFICATES_RELATION)
        self._files = ApiserverFileRecords(charm.model, PEER_RELATION)

    def converge(self, config: ops.ConfigData) -> WebhookOutcome:
        """Leader: apply the objects. Any unit: read the address back, ask for its certificate.

        A bad option, or a certificate that cannot be served, holds back the objects (and the
        files naming the certificate) but never the read-back nor the certificate request.
        """
        refused: list[str] = []
        tls, tls_usable, wanted = None, True, None
        try:
            tls = self.certificates.current()
        except InvalidStateError as exc:
            refused.append(str(exc))
            tls_usable = False
        try:
            options = load_options(WebhookOptions, config)
            wanted = webhook_state(options) if tls_usable else None
        except InvalidStateError as exc:
            refused.append(str(exc))
        from webhook._cluster import AuditWebhookCluster, ClusterError  # noqa: PLC0415

        leader = self._unit.is_leader()
        try:
            address = AuditWebhookCluster(self._app.name, self._model.name).converge(
                wanted, leader=leader, ca_cert=ca_cert_of(tls)
            )
        except ClusterError as exc:
            # Falco keeps running meanwhile: only the cluster side waits for the fix. The
            # status may be cut to its length; the log keeps the API's whole answer.
            logger.warning("%s", exc)
            problem = Report(waiting=f"{exc}; will retry") if exc.retryable else Report(str(exc))
            return WebhookOutcome(_blocked(refused) or problem, tls, tls_usable)
        if address is None:
            # A leader gets here only with a reason already named.
            waiting = (
                "" if leader else "waiting for the leader to create the audit webhook Service"
            )
            return WebhookOutcome(_blocked(refused) or Report(waiting=waiting), tls, tls_usable)
        tls_notes = self.certificates.converge(address, self._app.name, self._model.name, tls)
        if not tls_usable:
            return WebhookOutcome(Report("; ".join(refused)), tls, tls_usable)
        kubeconfig = webhook_kubeconfig(address, ca_cert_of(tls))
        if refused:
            return WebhookOutcome(Report("; ".join(refused)), tls, kubeconfig=kubeconfig)
        outdated = self._files.outdated(WebhookIdentity.served(address, tls))
        summary = (
            f"webhook {address.url(tls=tls is not None)}",
            address.reachability_note,
        )
        report = Report(outdated or "", notes=tuple(tls_notes), summary=summary)
        return WebhookOutcome(report, tls, kubeconfig=kubeconfig)

    def handout(self, config: ops.ConfigData) -> dict[str, str]:
        """What the admin needs to point the apiserver at Falco; remembered as handed out.

        Raises InvalidStateError when the options, the certificate or the cluster stand in the
        way, with the reason.
        """
        from webhook._cluster import AuditWebhookCluster, ClusterError  # noqa: PLC0415

        wanted = webhook_state(load_options(WebhookOptions, config))
        tls = self.certificates.current()
        try:
            address = AuditWebhookCluster(self._app.name, self._model.name).read_address()
        except ClusterError as exc:
            raise InvalidStateError(str(exc)) from None
        if address is None:
            raise InvalidStateError(
                "the audit webhook Service does not exist yet: is the leader trusted?"
            )
        kubeconfig = webhook_kubeconfig(address, ca_cert_of(tls))
        results = webhook_action_result(
            self._model.name, self._app.name, kubeconfig, wanted.audit_policy
        )
        # The admin now holds this file: the status stops asking for it to be replaced.
        self._files.handed_out(WebhookIdentity.served(address, tls))
        return results

    def remove(self) -> None:
        """Delete the cluster objects when the application goes, never on a scale-down.

        On a scale-down the next leader would recreate the Service with a new address and the
        kube-apiserver's webhook file would point nowhere.
        """
        if self._unit.is_leader() and self._app.planned_units() == 0:
            from webhook._cluster import remove_webhook_objects  # noqa: PLC0415

            remove_webhook_objects(self._app.name, self._model.name)


def _blocked(reasons: list[str]) -> Report | None:
    """The Blocked report of ``reasons``, or None when there is none."""
    return Report("; ".join(reasons)) if reasons else None
