#!/usr/bin/env python3
"""gelf-integrator: an existing Graylog's GELF HTTP input, offered over the `gelf` relation.

The class wires events to one reconcile: check the options (`integrator_config`), read the
user secrets the two ``type: secret`` options point at, publish through the gelf library,
and provision Graylog (`provisioning`) when an API is configured. Each part reports a
status; `collect-status` shows the most severe. No workload: the same charm runs on
Kubernetes and machines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import ops

from charms.falco_k8s.v0.gelf import (
    AUTH_CONTENT_KEY,
    GelfEndpointError,
    GelfEndpointProvider,
    GelfSenderTopology,
)
from integrator_config import (
    ENDPOINT_OPTIONS,
    ConfigError,
    IntegratorConfig,
    api_token,
    auth_header_value,
    load_config,
)
from status_text import status_text

logger = logging.getLogger(__name__)

RELATION = "gelf"
AUTH_SECRET_LABEL = "gelf-auth"  # noqa: S105 (a label, not a secret)
"""The charm's own copy of the auth header value: a user secret cannot be granted onwards."""


class GelfIntegratorCharm(ops.CharmBase):
    """Publishes the configured GELF endpoint to every requirer; optionally provisions Graylog."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._statuses: list[ops.StatusBase] = []
        self._secrets: list[str] = []  # values no status may show
        self.gelf = GelfEndpointProvider(self, relation_name=RELATION)
        for event in (
            self.on.install,
            self.on.start,
            self.on.upgrade_charm,
            self.on.config_changed,
            self.on.update_status,
            self.on.leader_elected,
            self.on.secret_changed,
            self.on[RELATION].relation_joined,
            self.on[RELATION].relation_changed,  # a bad topology must show, not only a good one
            self.on[RELATION].relation_broken,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)

    def _reconcile(self, _: ops.EventBase) -> None:
        loaded = load_config(self.config)
        if loaded.reason:
            self._statuses.append(ops.BlockedStatus(loaded.reason))
        if not loaded.usable_for(ENDPOINT_OPTIONS):
            return  # what was published stays
        config = loaded.values
        try:
            auth = self._auth(config)
        except ConfigError as e:
            self._statuses.append(ops.BlockedStatus(str(e)))
            return
        token = None
        if loaded.provisions:
            try:
                token = self._read_secret(config.api_token_secret, "api_token_secret", api_token)
            except ConfigError as e:
                self._statuses.append(ops.BlockedStatus(str(e)))
        senders = self._senders()
        related = len(self.model.relations[RELATION])
        where = (
            f"alerts to {urlsplit(config.gelf_url).netloc}; "
            f"{related} requirer app{'' if related == 1 else 's'}"
        )
        if not self.unit.is_leader():
            self._statuses.append(ops.ActiveStatus(f"{where} (published by the leader)"))
            return
        self._publish(config, auth)
        if token is None:
            self._statuses.append(ops.ActiveStatus(where))
        else:
            self._statuses.append(self._provision(config, auth, token, senders, where))

    def _auth(self, config: IntegratorConfig) -> tuple[str, str] | None:
        if not config.auth_header:
            return None
        value = self._read_secret(config.auth_secret, "auth_secret", auth_header_value)
        return config.auth_header, value

    def _read_secret(self, uri: str, option: str, extract: Callable[[dict[str, str]], str]) -> str:
        """The value a ``type: secret`` option's user secret holds, remembered to be hidden."""
        try:
            content = self.model.get_secret(id=uri).get_content(refresh=True)
        except (ops.SecretNotFoundError, ops.ModelError):
            raise ConfigError(
                f"{option}: cannot read the secret; run juju grant-secret <secret> {self.app.name}"
            ) from None
        value = extract(content)
        self._secrets.append(value)
        return value

    def _senders(self) -> list[GelfSenderTopology]:
        """The senders' valid topologies; a bad one blocks, naming its relation."""
        senders: list[GelfSenderTopology] = []
        for relation in self.model.relations[RELATION]:
            try:
                sender = self.gelf.load_sender(relation)
            except GelfEndpointError as e:
                self._statuses.append(ops.BlockedStatus(str(e)))
                continue
            if sender is not None:
                senders.append(sender)
        return senders

    def _publish(self, config: IntegratorConfig, auth: tuple[str, str] | None) -> None:
        secret = None
        if auth is not None:
            secret = self._own_auth_secret(auth[1])
        self.gelf.publish(
            config.gelf_url,
            auth_header_name=auth[0] if auth else None,
            auth_secret=secret,
            ca_cert=config.ca_cert or None,
            max_message_bytes=config.max_message_bytes,
        )

    def _own_auth_secret(self, value: str) -> ops.Secret:
        content = {AUTH_CONTENT_KEY: value}
        try:
            secret = self.model.get_secret(label=AUTH_SECRET_LABEL)
        except ops.SecretNotFoundError:
            return self.app.add_secret(content, label=AUTH_SECRET_LABEL)
        if secret.peek_content() != content:
            secret.set_content(content)
        return secret

    def _provision(
        self,
        config: IntegratorConfig,
        auth: tuple[str, str] | None,
        token: str,
        senders: list[GelfSenderTopology],
        where: str,
    ) -> ops.StatusBase:
        from graylog_api import GraylogApi  # noqa: PLC0415 (only when provisioning)
        from provisioning import (  # noqa: PLC0415
            ProvisioningBlockedError,
            ProvisioningWaitingError,
            Sender,
            provision,
        )

        api = GraylogApi(config.api_url, token, ca_cert=config.ca_cert or None)
        try:
            done = provision(
                api,
                port=urlsplit(config.gelf_url).port or 0,  # the config requires the port
                max_message_bytes=config.max_message_bytes,
                senders=[Sender(s.model, s.application, s.cluster) for s in senders],
                owner=f"{self.model.name}/{self.app.name}",
                auth=auth,
            )
        except ProvisioningWaitingError as e:
            return ops.WaitingStatus(str(e))
        except ProvisioningBlockedError as e:
            return ops.BlockedStatus(str(e))
        finally:
            logger.info("Graylog API requests: %s", api.log.requests)
        streams = len(done.running_streams)
        return ops.ActiveStatus(
            f"{where}; Graylog {done.version}: input running, "
            f"{streams} stream{'' if streams == 1 else 's'}"
        )

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        # Hooks that do not reconcile keep the last status; ops shows the most severe.
        for status in self._statuses:
            event.add_status(
                ops.StatusBase.from_name(status.name, status_text(status.message, self._secrets))
            )


if __name__ == "__main__":  # pragma: nocover
    ops.main(GelfIntegratorCharm)
