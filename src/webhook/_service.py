"""The apiserver's side as one service: cluster objects, credentials, the intake, the admin's file.

The leader keeps the Service, ConfigMap, Secret and NetworkPolicy converged and owns the
credentials (the token, the charm's own CA); every unit reads back the live address, serves the
webhook through its audit intake with the provider's certificate (or the charm's), and tells
whether the file the admin holds is still the one the intake serves for. lightkube loads only
here, when the cluster is touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import ops

from constants import CERTIFICATES_RELATION, FORWARDER_CONTAINER, INTAKE_SERVICE, PEER_RELATION
from options import InvalidStateError, load_options
from payload import Payload
from peer_memory import UnitMemory
from report import Report
from webhook import _intake_service as intake_service
from webhook._apiserver_file import ApiserverFileRecords
from webhook._apiserver_side import WebhookAddress, webhook_action_result, webhook_kubeconfig
from webhook._audit_policy import AuditPolicy, audit_policy
from webhook._certificates import WebhookCertificates
from webhook._credentials import Credentials, WebhookCredentials
from webhook._options import WebhookOptions, WebhookState, webhook_state
from webhook._tls import WebhookIdentity, WebhookTls, certificate_sans, tls_notes
from workload import Workload, WorkloadError

logger = logging.getLogger(__name__)

SECONDS_PER_MINUTE = 60


@dataclass
class _Inputs:
    """What converging starts from: the provider's certificate and the options, checked."""

    refused: list[str] = field(default_factory=list[str])
    provider_tls: WebhookTls | None = None
    tls_usable: bool = True
    wanted: WebhookState | None = None


class _HeldBackError(Exception):
    """Something the webhook needs is not there yet; ``report`` says what."""

    def __init__(self, blocked: str = "", *, waiting: str = ""):
        super().__init__(blocked or waiting)
        self.report = Report(blocked, waiting=waiting)


class AuditWebhook:
    """The webhook of one application: its objects, credentials, intake and the admin's file.

    The outcome of checking ``audit_policy`` is kept in the unit's peer data, so an unchanged
    policy is not checked again.
    """

    CHECKED_POLICY_KEY = "checked-audit-policy"

    def __init__(self, charm: ops.CharmBase, memory: UnitMemory):
        self._app = charm.app
        self._unit = charm.unit
        self._model = charm.model
        self._memory = memory
        self.certificates = WebhookCertificates(charm, CERTIFICATES_RELATION)
        self.credentials = WebhookCredentials(charm.model, PEER_RELATION)
        self._files = ApiserverFileRecords(charm.model, PEER_RELATION)
        self.intake = Workload(charm.unit.get_container(FORWARDER_CONTAINER), INTAKE_SERVICE)

    def converge(self, config: ops.ConfigData, payload: Payload | None) -> Report:
        """Leader: apply the objects and credentials. Any unit: run the intake on them.

        A bad option, or a provider's certificate that cannot be served, holds back the
        objects (or the intake's files) but never the read-back nor the certificate request.
        """
        inputs = self._inputs(config)
        try:
            credentials, address, tls = self._serving(inputs)
        except _HeldBackError as held:
            return _blocked(inputs.refused) or held.report
        if not inputs.tls_usable:
            return Report("; ".join(inputs.refused))
        running = self._run_intake(payload, tls, credentials)
        if inputs.refused or running.waiting:
            return _blocked(inputs.refused) or running
        served = WebhookIdentity.served(address, tls, credentials.token_sha256)
        sans = certificate_sans(address, self._app.name, self._model.name)
        awaited = self.certificates.related and inputs.provider_tls is None
        wanted_notes = inputs.wanted.notes if inputs.wanted else ()
        return Report(
            self._files.outdated(served, settled=not awaited) or "",
            notes=(*tls_notes(tls, sans, awaited=awaited), *running.notes, *wanted_notes),
            summary=(f"webhook {address.url}", address.reachability_note),
        )

    def _inputs(self, config: ops.ConfigData) -> _Inputs:
        """The options and the provider's certificate, each checked on its own."""
        inputs = _Inputs()
        try:
            inputs.provider_tls = self.certificates.current()
        except InvalidStateError as exc:
            inputs.refused.append(str(exc))
            inputs.tls_usable = False
        try:
            inputs.wanted = self._wanted(config)
        except InvalidStateError as exc:
            inputs.refused.append(str(exc))
        return inputs

    def _serving(self, inputs: _Inputs) -> tuple[Credentials, WebhookAddress, WebhookTls]:
        """The credentials, the live address and the certificate to serve it with.

        Raises _HeldBackError with the report when one of them is not there yet.
        """
        credentials = self.credentials.current()
        if credentials is None:
            raise _HeldBackError(
                waiting="waiting for the leader to create the webhook credentials"
            )
        provider = inputs.provider_tls
        ca_cert = provider.ca_cert if provider is not None else credentials.ca.certificate
        from webhook._cluster import AuditWebhookCluster, ClusterError  # noqa: PLC0415

        leader = self._unit.is_leader()
        try:
            address = AuditWebhookCluster(self._app.name, self._model.name).converge(
                inputs.wanted if inputs.tls_usable else None,
                leader=leader,
                ca_cert=ca_cert,
                token=credentials.token,
            )
        except ClusterError as exc:
            # The intake keeps taking batches meanwhile: only the cluster side waits. The
            # status may be cut to its length; the log keeps the API's whole answer.
            logger.warning("%s", exc)
            if exc.retryable:
                raise _HeldBackError(waiting=f"{exc}; will retry") from None
            raise _HeldBackError(str(exc)) from None
        if address is None:
            # A leader gets here only with a reason already named.
            waiting = (
                "" if leader else "waiting for the leader to create the audit webhook Service"
            )
            raise _HeldBackError(waiting=waiting)
        sans = certificate_sans(address, self._app.name, self._model.name)
        self.certificates.request(sans)
        credentials = self.credentials.serving_for(credentials, sans)
        tls = provider or credentials.serving_tls()
        if tls is None:
            raise _HeldBackError(waiting="waiting for the leader to issue the webhook certificate")
        return credentials, address, tls

    def handout(self, config: ops.ConfigData) -> dict[str, str]:
        """What the admin needs to point the apiserver at Falco; remembered as handed out.

        Raises InvalidStateError when the options, the credentials, the certificate or the
        cluster stand in the way, with the reason.
        """
        from webhook._cluster import AuditWebhookCluster, ClusterError  # noqa: PLC0415

        wanted = self._wanted(config)
        credentials = self.credentials.current()
        if credentials is None:
            raise InvalidStateError("the webhook credentials do not exist yet: is there a leader?")
        try:
            address = AuditWebhookCluster(self._app.name, self._model.name).read_address()
        except ClusterError as exc:
            raise InvalidStateError(str(exc)) from None
        if address is None:
            raise InvalidStateError(
                "the audit webhook Service does not exist yet: is the leader trusted?"
            )
        tls = self._certificate_for(credentials, address)
        kubeconfig = webhook_kubeconfig(address, tls.ca_cert, credentials.token)
        results = webhook_action_result(
            self._model.name, self._app.name, kubeconfig, wanted.audit_policy.text()
        )
        # The admin now holds this file: the status stops asking for it to be replaced.
        self._files.handed_out(WebhookIdentity.served(address, tls, credentials.token_sha256))
        return results

    def _wanted(self, config: ops.ConfigData) -> WebhookState:
        """The objects the options ask for; InvalidStateError names the option at fault."""
        options = load_options(WebhookOptions, config)
        return webhook_state(options, self._audit_policy(options.audit_policy))

    def _audit_policy(self, option: str) -> AuditPolicy:
        """``audit_policy`` checked, or as remembered when checked before."""
        policy = audit_policy(option, self._memory.recall(self.CHECKED_POLICY_KEY))
        self._memory.remember(self.CHECKED_POLICY_KEY, policy.check.to_json())
        return policy

    def rotate_token(self, keep_previous_minutes: int) -> dict[str, str]:
        """Leader: a new token; the old one stays accepted for ``keep_previous_minutes``.

        Raises InvalidStateError on another unit, or when the secret cannot be written.
        """
        if not self._unit.is_leader():
            raise InvalidStateError(f"run it on the leader: juju run {self._app.name}/leader ...")
        if keep_previous_minutes < 0:
            raise InvalidStateError("keep-previous-minutes must not be negative")
        try:
            self.credentials.rotate_token(keep_previous_minutes * SECONDS_PER_MINUTE)
        except ops.ModelError as exc:
            raise InvalidStateError(f"the token could not be rotated: {exc}") from None
        kept = (
            f"the previous token is accepted for {keep_previous_minutes} more minutes"
            if keep_previous_minutes
            else "the previous token is refused from now on"
        )
        return {"result": f"token rotated; {kept}: run get-webhook-config and replace the file"}

    def remove(self) -> None:
        """Delete the cluster objects when the application goes, never on a scale-down.

        On a scale-down the next leader would recreate the Service with a new address and the
        kube-apiserver's webhook file would point nowhere.
        """
        if self._unit.is_leader() and self._app.planned_units() == 0:
            from webhook._cluster import remove_webhook_objects  # noqa: PLC0415

            remove_webhook_objects(self._app.name, self._model.name)

    def _certificate_for(self, credentials: Credentials, address: WebhookAddress) -> WebhookTls:
        """The certificate this unit serves for ``address``: the provider's, else the charm's."""
        tls = self.certificates.current()
        if tls is None:
            sans = certificate_sans(address, self._app.name, self._model.name)
            tls = self.credentials.serving_for(credentials, sans).serving_tls()
        if tls is None:
            raise InvalidStateError("the webhook certificate is not issued yet: retry shortly")
        return tls

    def _run_intake(
        self, payload: Payload | None, tls: WebhookTls, credentials: Credentials
    ) -> Report:
        """The intake on this certificate and these tokens; what it says is worth a look."""
        if payload is None:
            return Report()
        if not self.intake.can_connect():
            return Report(waiting="waiting for Pebble in the forwarder container")
        try:
            settled = intake_service.converge(
                self.intake, payload, tls.pem, credentials.accepted()
            )
        except WorkloadError as exc:
            return Report(waiting=f"audit intake: {exc}; will retry")
        return Report(notes=tuple(intake_service.intake_notes())) if settled else Report()


def _blocked(reasons: list[str]) -> Report | None:
    """The Blocked report of ``reasons``, or None when there is none."""
    return Report("; ".join(reasons)) if reasons else None
