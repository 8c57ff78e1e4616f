#!/usr/bin/env python3
"""gelf-integrator: an existing Graylog's GELF HTTP input, offered over the `gelf` relation.

The class wires events to one reconcile: check the options (`integrator_config`), read the
user secrets, publish through the gelf library, and provision Graylog (`provisioning`)
when an API is configured. No workload: the same charm runs on Kubernetes and machines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import ops

from charms.falco_k8s.v0.gelf import AUTH_CONTENT_KEY, GelfEndpointProvider
from integrator_config import (
    ApiSettings,
    ConfigError,
    IntegratorConfig,
    api_token,
    auth_header_value,
    load_api,
    load_config,
)

logger = logging.getLogger(__name__)

RELATION = "gelf"
AUTH_SECRET_LABEL = "gelf-auth"  # noqa: S105 (a label, not a secret)
"""The charm's own copy of the auth header value: a user secret cannot be granted onwards."""


class GelfIntegratorCharm(ops.CharmBase):
    """Publishes the configured GELF endpoint to every requirer; optionally provisions Graylog."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._status: ops.StatusBase | None = None
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
            self.on[RELATION].relation_broken,
            self.gelf.on.sender_changed,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)

    def _reconcile(self, _: ops.EventBase) -> None:
        try:
            config = load_config(self.config)
            auth = self._auth(config)
        except ConfigError as e:
            self._status = ops.BlockedStatus(str(e))  # what was published stays
            return
        # A bad provisioning option holds back provisioning only, not the endpoint.
        api, token, api_problem = None, None, None
        try:
            api = load_api(self.config)
            if api is not None:
                token = self._read_secret(api.token_secret, "api_token_secret", api_token)
        except ConfigError as e:
            api_problem = e
        related = len(self.model.relations[RELATION])
        where = f"alerts to {config.gelf_url}; {related} requirer app{'' if related == 1 else 's'}"
        if self.unit.is_leader():
            self._publish(config, auth)
        if api_problem is not None:
            self._status = ops.BlockedStatus(str(api_problem))
        elif not self.unit.is_leader():
            self._status = ops.ActiveStatus(f"{where} (published by the leader)")
        elif api is None or token is None:
            self._status = ops.ActiveStatus(where)
        else:
            self._status = self._provision(config, api, auth, token, where)

    def _auth(self, config: IntegratorConfig) -> tuple[str, str] | None:
        if config.auth_header is None or config.auth_secret is None:
            return None
        value = self._read_secret(config.auth_secret, "auth_secret", auth_header_value)
        return config.auth_header, value

    def _read_secret(self, uri: str, option: str, extract: Callable[[dict[str, str]], str]) -> str:
        try:
            content = self.model.get_secret(id=uri).get_content(refresh=True)
        except (ops.SecretNotFoundError, ops.ModelError):
            raise ConfigError(
                f"{option}: cannot read the secret; run juju grant-secret <secret> {self.app.name}"
            ) from None
        return extract(content)

    def _publish(self, config: IntegratorConfig, auth: tuple[str, str] | None) -> None:
        secret = None
        if auth is not None:
            secret = self._own_auth_secret(auth[1])
        self.gelf.publish(
            config.gelf_url,
            auth_header_name=auth[0] if auth else None,
            auth_secret=secret,
            ca_cert=config.ca_cert,
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
        api_settings: ApiSettings,
        auth: tuple[str, str] | None,
        token: str,
        where: str,
    ) -> ops.StatusBase:
        from graylog_api import GraylogApi  # noqa: PLC0415 (only when provisioning)
        from provisioning import (  # noqa: PLC0415
            ProvisioningBlockedError,
            ProvisioningWaitingError,
            Sender,
            provision,
        )

        api = GraylogApi(api_settings.url, token, ca_cert=config.ca_cert)
        senders = [Sender(s.model, s.application) for s in self.gelf.senders()]
        try:
            done = provision(
                api,
                port=api_settings.input_port,
                max_message_bytes=config.max_message_bytes,
                senders=senders,
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
            f"{where}; Graylog {done.version}: input on port {done.port} running, "
            f"{streams} stream{'' if streams == 1 else 's'}"
        )

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if self._status is not None:  # hooks that do not reconcile keep the last status
            event.add_status(self._status)


if __name__ == "__main__":  # pragma: nocover
    ops.main(GelfIntegratorCharm)
