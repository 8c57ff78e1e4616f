"""The intake in front of the real k8saudit plugin: batches, posts, a reader standing for Falco.

Batches are built from a real EventList kube-apiserver 1.34.4 posted with the charm's files
(``recorded-eventlist.json``: ``../shared/real-e2e/apiserver-eventlists/batch-0017.json``, 41
events of pods, configmaps, RBAC, secrets, exec), each event given a fresh auditID so that a
test can tell every event apart. `FalcoLoop` calls the plugin's next_batch in a thread, as Falco's
event loop does, and can stop (as Falco stops) while batches sit in k8saudit's queue.
"""

from __future__ import annotations

import copy
import http.client
import json
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from falco_plugin_api import EOF, FAILURE, Plugin
from k8saudit_listener import K8sAuditListener, loopback_params, open_k8saudit

from audit_intake.config import AcceptedToken, IntakeConfig, token_sha256
from audit_intake.service import Intake

RECORDED = Path(__file__).with_name("recorded-eventlist.json")
TOKEN = "the-webhook-token"
K8SAUDIT_INIT = {"useAsync": False, "maxEventSize": 262144, "webhookMaxBatchSize": 12582912}
WAIT_SECONDS = 20.0


def recorded_events() -> list[dict[str, Any]]:
    """The events of the recorded EventList, in the order the apiserver sent them."""
    return json.loads(RECORDED.read_text())["items"]


def eventlist(events: list[dict[str, Any]]) -> bytes:
    """A webhook body as the apiserver writes it (compact JSON, no HTML escaping aside)."""
    document = {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": events,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def fresh_batch(template: list[dict[str, Any]], count: int) -> tuple[bytes, list[str]]:
    """``count`` events cycled from ``template``, each with a new auditID; body and IDs."""
    events = []
    for index in range(count):
        event = copy.copy(template[index % len(template)])
        event["auditID"] = str(uuid.uuid4())
        events.append(event)
    return eventlist(events), [event["auditID"] for event in events]


@dataclass(frozen=True)
class Reply:
    """What a client saw: the status, headers, body, and whether the server closed."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool


def post(
    port: int,
    body: bytes,
    *,
    token: str | None = TOKEN,
    context: ssl.SSLContext | None = None,
    path: str = "/k8s-audit?timeout=30s",
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request as kube-apiserver's webhook client sends it (its headers, its query)."""
    sent = {
        "Content-Type": "application/json",
        "Accept": "application/json, */*",
        "User-Agent": "Go-http-client/1.1",
    }
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_SECONDS)
    else:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=WAIT_SECONDS, context=context
        )
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        sock = connection.sock
        closed = sock is None or _closed(sock)
        return Reply(response.status, dict(response.getheaders()), data, closed)
    finally:
        connection.close()


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(WAIT_SECONDS)
    try:
        return sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def intake_config(
    spool: Path, k8saudit_port: int, *, tls_pem: Path | None = None, **overrides: Any
) -> IntakeConfig:
    """A config on ephemeral loopback ports, feeding k8saudit on ``k8saudit_port``."""
    values: dict[str, Any] = {
        "webhook_host": "127.0.0.1",
        "webhook_port": 0,
        "webhook_path": "/k8s-audit",
        "tls_pem": tls_pem,
        "tokens": (AcceptedToken(token_sha256(TOKEN)),),
        "k8saudit_url": f"http://127.0.0.1:{k8saudit_port}/k8s-audit",
        "spool_dir": spool,
        "spool_max_bytes": 256 * 1024 * 1024,
        "max_batch_bytes": 12 * 1024 * 1024,
        "settle_seconds": 1.0,
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
    }
    values.update(overrides)
    return IntakeConfig(**values)


@contextmanager
def running_intake(config: IntakeConfig) -> Iterator[Intake]:
    with Intake(config) as intake:
        yield intake


@dataclass
class FalcoLoop:
    """Calls k8saudit's next_batch in a thread, as Falco's event loop does; keeps the auditIDs.

    `pause` stops reading (Falco busy), `stop_falco` stops reading and closes the plugin
    (Falco stopping, or reloading): what k8saudit had answered 200 for and not handed out is
    gone. `start_falco` opens it again on the same port.
    """

    plugin: Plugin
    params: str
    port: int
    seen: Counter[str] = field(default_factory=Counter[str])
    _stack: Any = None
    _thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    listener: K8sAuditListener | None = None

    @classmethod
    @contextmanager
    def running(cls, plugin: Plugin) -> Iterator[FalcoLoop]:
        params, port = loopback_params("http://:9766/k8s-audit")
        loop = cls(plugin, params, port)
        loop.start_falco()
        try:
            yield loop
        finally:
            loop.stop_falco()

    def start_falco(self) -> None:
        self._stack = open_k8saudit(self.plugin, K8SAUDIT_INIT, self.params)
        self.listener = self._stack.__enter__()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stop_falco(self) -> None:
        self.pause()
        if self._stack is not None:
            self._stack.__exit__(None, None, None)
            self._stack = None
            self.listener = None

    def wait_for(self, ids: list[str], timeout: float = WAIT_SECONDS) -> bool:
        """Whether every one of ``ids`` was read within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.seen[audit_id] for audit_id in ids):
                return True
            time.sleep(0.02)
        return False

    def _read(self) -> None:
        assert self.listener is not None
        instance = self.listener.instance
        while not self._stopping.is_set():
            rc, batch = instance.next_batch()
            if rc in (FAILURE, EOF):
                return
            for event in batch:
                self.seen[json.loads(event.data)["auditID"]] += 1
