"""The audit path for real: kube-apiserver with the charm's files, the intake, the real k8saudit.

`charm_apiserver_side` is what ``get-webhook-config`` hands an operator (the same function builds
the action's results), for a webhook address the test's intake answers at; `webhook_args` puts
the files where the flags say, as an operator would. The intake is the charm's own program on
the charm's own config (`intake_config`, moved to loopback ports and a temporary spool), with
the credentials the leader would create; k8saudit listens where the charm's falco.yaml says,
moved to a free loopback port. `AuditStream` reads back what the plugin received, as Falco
does (next_batch), and extracts fields as Falco's rules see them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
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
from fakes.fake_balancing import RandomBalancer
from falco_plugin_api import Event, Plugin, PluginState
from k8saudit_listener import K8sAuditListener, loopback_params, open_k8saudit
from kube_apiserver import Etcd, KubeApiServer, running_kube_apiserver
from tls_ca import TestCa

from audit_intake.config import IntakeConfig
from audit_intake.service import Intake
from constants import FALCO_RULES_D, K8S_AUDIT_RULES
from falco._falco_yaml import FalcoSettings, render_falco_yaml
from webhook._apiserver_side import (
    APISERVER_AUDIT_POLICY,
    APISERVER_WEBHOOK_CONFIG,
    WebhookAddress,
    webhook_action_result,
    webhook_kubeconfig,
)
from webhook._audit_policy import resolve_audit_policy
from webhook._credentials import Credentials
from webhook._intake_service import intake_config
from webhook._own_ca import new_ca
from webhook._tls import WebhookTls, certificate_sans, webhook_tls

APISERVER_SIDE = ("webhook-config", "audit-policy", "apiserver-flags")
FILES = {"webhook-config": APISERVER_WEBHOOK_CONFIG, "audit-policy": APISERVER_AUDIT_POLICY}


# What the apiserver's file holds instead of the charm's token: none at all, or a wrong one.
NO_TOKEN = None


def listener_address(port: int) -> WebhookAddress:
    """A NodePort webhook Service: the apiserver posts to 127.0.0.1:``port``, the intake's."""
    return WebhookAddress("NodePort", "10.152.183.77", port)


def charm_apiserver_side(
    address: WebhookAddress, ca_cert: str, token: str | None, audit_policy: str = ""
) -> dict[str, str]:
    """The action's webhook-config, audit-policy and apiserver-flags for ``address``.

    ``token`` None leaves the token out of the file, as an older revision's file had none.
    """
    kubeconfig = webhook_kubeconfig(address, ca_cert, token or "unused")
    if token is None:
        document = yaml.safe_load(kubeconfig)
        document["users"][0]["user"] = {}
        kubeconfig = yaml.safe_dump(document, sort_keys=False)
    results = webhook_action_result(
        "audit", "falco-k8s", kubeconfig, resolve_audit_policy(audit_policy)
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


def rendered_k8saudit() -> tuple[dict[str, Any], str]:
    """k8saudit's init_config and open_params as the charm renders them (loopback, plain HTTP)."""
    text = render_falco_yaml(FalcoSettings(), (K8S_AUDIT_RULES, FALCO_RULES_D))
    entry = next(p for p in yaml.safe_load(text)["plugins"] if p["name"] == "k8saudit")
    return entry["init_config"], entry["open_params"]


def leaders_credentials(address: WebhookAddress) -> Credentials:
    """What the leader creates: a token, its own CA, a certificate for the charm's SANs."""
    credentials = Credentials(token=secrets.token_urlsafe(32), ca=new_ca("falco-k8s CA"))
    return credentials.with_serving(certificate_sans(address, "falco-k8s", "audit"))


def charm_tls(address: WebhookAddress) -> WebhookTls:
    """What the charm serves once the certificates relation answered.

    A CA-issued certificate for the charm's SANs (127.0.0.1 for a NodePort), with its key.
    """
    ca = TestCa("certificates provider CA")
    certificate, key = ca.server_pem(certificate_sans(address, "falco-k8s", "audit").ips)
    return webhook_tls(certificate, [certificate, ca.pem], ca.pem, key)


@dataclass
class AuditPath:
    """kube-apiserver with the charm's files, posting to the charm's intake, which feeds k8saudit.

    Falco (k8saudit behind the intakes) and the first intake (the apiserver's listener, as when
    the pod goes) can each be stopped and started again on the same port while the apiserver
    runs. ``connections``, when asked for, counts the TCP connections the apiserver opened;
    with several units the apiserver reaches them through ``balancer``, as through kube-proxy.
    """

    stream: AuditStream
    side: dict[str, str]
    connections: ConnectionCounter | None
    balancer: RandomBalancer | None
    intakes: list[Intake]
    credentials: Credentials
    _open_falco: Callable[[], K8sAuditListener]
    _falco: ExitStack
    _intake_configs: list[IntakeConfig]
    apiserver: KubeApiServer = field(init=False)

    @property
    def intake(self) -> Intake:
        """The first unit's intake."""
        return self.intakes[0]

    def stop_falco(self) -> None:
        """Read what was received, then close k8saudit: the intake keeps what comes meanwhile."""
        self.stream.read()
        self._falco.close()

    def start_falco(self) -> None:
        self.stream.listener = self._open_falco()

    def stop_intake(self) -> None:
        """The first pod's listener goes: the apiserver's connections are refused."""
        self.intake.close()

    def start_intake(self) -> None:
        """The first intake comes back on the same port and spool."""
        self.intakes[0] = Intake(self._intake_configs[0], bind_wait_seconds=10)
        self.intake.start()

    def stop_intakes(self) -> None:
        for intake in self.intakes:
            intake.close()


@contextmanager
def running_audit_path(
    etcd: Etcd,
    workdir: Path,
    k8saudit: Plugin,
    json_plugin: Plugin,
    *,
    provider_ca: bool = False,
    count_connections: bool = False,
    args: Sequence[str] = (),
    apiserver_token: str | None = "",
    units: int = 1,
) -> Iterator[AuditPath]:
    """k8saudit and the intakes as the charm configures them, then an apiserver with its files.

    The intakes serve the charm's own CA, or a provider's with ``provider_ca``. The apiserver's
    file carries the leader's token, unless ``apiserver_token`` names another (None: none). It
    posts to the intake (through a connection counter if asked), or to ``units`` intakes
    through a random balancer; ``args`` come after the charm's flags.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        init_config, open_params = rendered_k8saudit()
        falco_params, falco_port = loopback_params(open_params)
        intake_ports = [loopback_params(open_params)[1] for _ in range(units)]
        several = units > 1 or count_connections
        door = loopback_params(open_params)[1] if several else intake_ports[0]
        address = listener_address(door)
        credentials = leaders_credentials(address)
        tls = charm_tls(address) if provider_ca else credentials.serving_tls()
        assert tls is not None
        pem = workdir / "webhook.pem"
        pem.write_bytes(tls.pem)
        pem.chmod(0o600)
        configs = [
            dataclasses.replace(
                intake_config(credentials.accepted()),
                webhook_host="127.0.0.1",
                webhook_port=port,
                metrics_host="127.0.0.1",
                metrics_port=0,
                tls_pem=pem,
                spool_dir=workdir / f"spool-{unit}",
                k8saudit_url=f"http://127.0.0.1:{falco_port}{urlsplit(open_params).path}",
            )
            for unit, port in enumerate(intake_ports)
        ]
        falco = ExitStack()
        stack.callback(falco.close)

        def open_falco() -> K8sAuditListener:
            return falco.enter_context(open_k8saudit(k8saudit, init_config, falco_params))

        json_state = stack.enter_context(json_plugin.initialized(""))
        stream = AuditStream(open_falco(), json_state)
        intakes = [Intake(config) for config in configs]
        for intake in intakes:
            intake.start()
        connections = balancer = None
        if units > 1:
            balancer = stack.enter_context(RandomBalancer(intake_ports, port=door))
        elif count_connections:
            connections = stack.enter_context(counting_connections(intake_ports[0], door))
        token = credentials.token if apiserver_token == "" else apiserver_token
        side = charm_apiserver_side(address, tls.ca_cert, token)
        path = AuditPath(
            stream, side, connections, balancer, intakes, credentials, open_falco, falco, configs
        )
        stack.callback(path.stop_intakes)  # whichever intakes run at the end
        path.apiserver = stack.enter_context(
            running_kube_apiserver(
                etcd, workdir / "kube-apiserver", args=webhook_args(side, workdir / "falco", *args)
            )
        )
        yield path
