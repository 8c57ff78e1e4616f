"""The audit path for real: kube-apiserver started with the charm's files posts to real k8saudit.

`charm_apiserver_side` is what ``get-webhook-config`` hands an operator (the same function builds
the action's results), for a webhook address a test's listener answers at; `webhook_args` puts
the files where the flags say, as an operator would. `AuditStream` reads back what the plugin
received, as Falco does (next_batch), and extracts fields as Falco's rules see them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from falco_plugin_api import Event, Plugin, PluginState
from k8saudit_listener import K8sAuditListener, loopback_params, open_k8saudit
from kube_apiserver import Etcd, KubeApiServer, running_kube_apiserver
from tls_ca import TestCa

from constants import FALCO_RULES_D, K8S_AUDIT_RULES
from falco._falco_yaml import FalcoSettings, WebhookPemFile, render_falco_yaml
from webhook._apiserver_side import (
    APISERVER_AUDIT_POLICY,
    APISERVER_WEBHOOK_CONFIG,
    WebhookAddress,
    webhook_action_result,
    webhook_kubeconfig,
)
from webhook._audit_policy import resolve_audit_policy
from webhook._tls import WebhookTls, certificate_sans, webhook_tls

APISERVER_SIDE = ("webhook-config", "audit-policy", "apiserver-flags")
FILES = {"webhook-config": APISERVER_WEBHOOK_CONFIG, "audit-policy": APISERVER_AUDIT_POLICY}


def listener_address(port: int) -> WebhookAddress:
    """A NodePort webhook Service: the apiserver posts to 127.0.0.1:``port``, where k8saudit is."""
    return WebhookAddress("NodePort", "10.152.183.77", port)


def charm_apiserver_side(
    address: WebhookAddress, ca_cert: str | None = None, audit_policy: str = ""
) -> dict[str, str]:
    """The action's webhook-config, audit-policy and apiserver-flags for ``address``."""
    results = webhook_action_result(
        "audit",
        "falco-k8s",
        webhook_kubeconfig(address, ca_cert),
        resolve_audit_policy(audit_policy),
    )
    return {key: results[key] for key in APISERVER_SIDE}


def webhook_args(side: dict[str, str], directory: Path, *extra: str) -> list[str]:
    """The flags of ``side``, byte for byte, with its two files written under ``directory``.

    The flags name the files at their documented default paths; an operator may keep them
    anywhere, and so do the tests (only the directory changes).
    """
    directory.mkdir(parents=True, exist_ok=True)
    flags = side["apiserver-flags"]
    for key, default in FILES.items():
        assert flags.count(default) == 1, f"the flags do not name {default} once"
        local = directory / Path(default).name
        local.write_text(side[key])
        flags = flags.replace(default, str(local))
    return [*flags.splitlines(), *extra]


@dataclass
class AuditStream:
    """The events a k8saudit listener received, read with next_batch and kept for matching."""

    listener: K8sAuditListener
    json_state: PluginState
    events: list[tuple[Event, dict[str, Any]]] = field(default_factory=list)

    def read(self) -> None:
        """Take what the plugin has now."""
        self.events.extend((event, json.loads(event.data)) for event in self.listener.poll())

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 60
    ) -> list[tuple[Event, dict[str, Any]]]:
        """At least ``count`` events that ``match``; fewer after ``timeout`` s, never a hang."""
        deadline = time.monotonic() + timeout
        while True:
            found = [(event, audit) for event, audit in self.events if match(audit)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            self.read()

    def extract(self, event: Event, fields: Sequence[str]) -> dict[str, list[Any]]:
        """Each field's values, from k8saudit (ka.*) or json (jevt.*), as Falco's rules do.

        One field per call, as Falco's filter checks extract: the plugin SDK reuses its string
        buffer within a call, so a second string field would overwrite the first.
        """
        values: dict[str, list[Any]] = {}
        for name in fields:
            if name.startswith("ka."):
                values |= self.listener.extract(event, [name])
            else:
                values |= self.json_state.extract(event, [name], "k8s_audit")
        return values


class ConnectionCounter:
    """A TCP relay on 127.0.0.1 in front of a listener: counts the connections clients open.

    Bytes pass through untouched, so TLS stays end to end between client and listener. While
    the listener is down, a connection is closed at once and counted in ``dropped``.
    """

    def __init__(self, target_port: int, port: int = 0):
        self.target_port = target_port
        self.accepted = 0
        self.dropped = 0
        self._server = socket.create_server(("127.0.0.1", port))
        self.port: int = self._server.getsockname()[1]
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                self.dropped += 1
                client.close()  # the listener is down: the client sees the connection drop
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._stopping = True
        self._server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with source, sink:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@contextmanager
def counting_connections(target_port: int, port: int = 0) -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter(target_port, port)
    try:
        yield counter
    finally:
        counter.close()


def rendered_k8saudit(pem: Path | None = None) -> tuple[dict[str, Any], str]:
    """k8saudit's init_config and open_params as the charm renders them (https with ``pem``)."""
    served = (
        None
        if pem is None
        else WebhookPemFile(str(pem), hashlib.sha256(pem.read_bytes()).hexdigest())
    )
    text = render_falco_yaml(FalcoSettings(), (K8S_AUDIT_RULES, FALCO_RULES_D), served)
    entry = next(p for p in yaml.safe_load(text)["plugins"] if p["name"] == "k8saudit")
    return entry["init_config"], entry["open_params"]


def charm_tls(address: WebhookAddress) -> WebhookTls:
    """What the charm serves once the certificates relation answered.

    A CA-issued certificate for the charm's SANs (127.0.0.1 for a NodePort), with its key.
    """
    ca = TestCa("certificates provider CA")
    certificate, key = ca.server_pem(certificate_sans(address, "falco-k8s", "audit").ips)
    return webhook_tls(certificate, [certificate, ca.pem], ca.pem, key)


@dataclass
class AuditPath:
    """kube-apiserver with the charm's files, posting to the real k8saudit (http or https).

    The listener can be stopped and started again on the same port while the apiserver runs.
    ``connections``, when asked for, counts the TCP connections the apiserver opened to it.
    """

    apiserver: KubeApiServer
    stream: AuditStream
    side: dict[str, str]
    connections: ConnectionCounter | None
    _open: Callable[[], K8sAuditListener]
    _listener: ExitStack

    def stop_listener(self) -> None:
        """Read what was received, then close k8saudit: its port refuses connections."""
        self.stream.read()
        self._listener.close()

    def start_listener(self) -> None:
        self.stream.listener = self._open()


@contextmanager
def running_audit_path(
    etcd: Etcd,
    workdir: Path,
    k8saudit: Plugin,
    json_plugin: Plugin,
    *,
    tls: bool = False,
    count_connections: bool = False,
    args: Sequence[str] = (),
) -> Iterator[AuditPath]:
    """Open k8saudit as the charm configures it, then an apiserver with the charm's files.

    The apiserver posts to the listener (through a connection counter if asked); ``args`` come
    after the charm's flags.
    """
    with ExitStack() as stack:
        init_config, open_params = rendered_k8saudit()
        params, port = loopback_params(open_params)
        relay_port = loopback_params(open_params)[1] if count_connections else port
        address = listener_address(relay_port)
        pem = None
        ca_cert = None
        if tls:
            served = charm_tls(address)
            pem = workdir / "k8saudit-webhook.pem"
            workdir.mkdir(parents=True, exist_ok=True)
            pem.write_bytes(served.pem)
            pem.chmod(0o600)
            ca_cert = served.ca_cert
            init_config, open_params = rendered_k8saudit(pem)
            params = open_params.replace(urlsplit(open_params).netloc, f"127.0.0.1:{port}")
        listener = ExitStack()
        stack.callback(listener.close)

        def open_listener() -> K8sAuditListener:
            return listener.enter_context(open_k8saudit(k8saudit, init_config, params))

        json_state = stack.enter_context(json_plugin.initialized(""))
        stream = AuditStream(open_listener(), json_state)
        connections = None
        if count_connections:
            connections = stack.enter_context(counting_connections(port, relay_port))
        side = charm_apiserver_side(address, ca_cert)
        apiserver = stack.enter_context(
            running_kube_apiserver(
                etcd, workdir / "kube-apiserver", args=webhook_args(side, workdir / "falco", *args)
            )
        )
        yield AuditPath(apiserver, stream, side, connections, open_listener, listener)
