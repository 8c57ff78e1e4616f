"""Open the real k8saudit plugin's webhook listener, post to it as kube-apiserver does, read back.

Reusable by any test of the webhook: give it the init_config and open_params (http or https;
for https pass an ``ssl.SSLContext`` that trusts the plugin's certificate to `post`).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import uuid
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from falco_plugin_api import EOF, FAILURE, Event, Instance, Plugin, PluginError, PluginState

# Bounds for waiting on the plugin's goroutines; tests never assert on time.
WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    """The listener's HTTP answer."""

    status: int
    body: str


@dataclass
class K8sAuditListener:
    """An initialized and opened k8saudit plugin whose webhook listener takes posts."""

    state: PluginState
    instance: Instance
    port: int
    scheme: str
    _pending: list[Event] = field(default_factory=list[Event])

    def post(
        self,
        path: str,
        body: bytes,
        *,
        method: str = "POST",
        content_type: str = "application/json",
        context: ssl.SSLContext | None = None,
    ) -> Reply:
        """Send one request to 127.0.0.1, retrying while the listener is still starting."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context)
            else:
                conn = http.client.HTTPConnection("127.0.0.1", self.port)
            try:
                conn.request(method, path, body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                return Reply(response.status, response.read().decode())
            except ConnectionRefusedError:
                # A failed listen (port taken) shows as a next_batch failure.
                self._pending.extend(self._next_batch())
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                conn.close()

    def _next_batch(self) -> list[Event]:
        rc, batch = self.instance.next_batch()
        if rc in (FAILURE, EOF):
            raise PluginError(f"next_batch returned {rc}: {self.state.last_error}")
        return batch

    def extract(self, event: Event, fields: Sequence[str]) -> dict[str, list[Any]]:
        """k8saudit's field extraction on one of its events, as Falco's k8s_audit source does."""
        return self.state.extract(event, fields, "k8s_audit")

    def poll(self) -> list[Event]:
        """What one next_batch call gives now (after anything read while a post waited)."""
        events, self._pending = self._pending, []
        return events + self._next_batch()

    def read_events(self, count: int) -> list[Event]:
        """Call next_batch until ``count`` events came (or a bound passed), as Falco does."""
        events, self._pending = self._pending, []
        deadline = time.monotonic() + WAIT_SECONDS
        while len(events) < count and time.monotonic() < deadline:
            events.extend(self._next_batch())
        return events


def loopback_params(open_params: str) -> tuple[str, int]:
    """``open_params`` on a free 127.0.0.1 port, keeping its scheme, path and query."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return urlsplit(open_params)._replace(netloc=f"127.0.0.1:{port}").geturl(), port


def falco_init_config(value: str | dict[str, Any] | None) -> str:
    """init_config as Falco hands it to plugin_init: a YAML map as JSON, text as it is."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


@contextmanager
def open_k8saudit(
    plugin: Plugin, init_config: str | dict[str, Any] | None, open_params: str
) -> Generator[K8sAuditListener]:
    """Init k8saudit with ``init_config`` and open ``open_params``; close and destroy after."""
    url = urlsplit(open_params)
    with (
        plugin.initialized(falco_init_config(init_config)) as state,
        state.opened(open_params) as instance,
    ):
        yield K8sAuditListener(state, instance, url.port or 80, url.scheme)


def event_list(*events: dict[str, Any]) -> bytes:
    """A webhook batch as kube-apiserver's webhook backend posts it."""
    return json.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events}
    ).encode()


def audit_event(
    *,
    level: str,
    verb: str,
    resource: str,
    namespace: str,
    name: str,
    subresource: str = "",
    uri_query: str = "",
    stage: str = "ResponseComplete",
    code: int = 200,
    user: str = "alice",
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit.k8s.io/v1 Event shaped as kube-apiserver logs it at ``level``.

    Bodies appear only at the levels that carry them: the request at Request and above, the
    response (here the same object, as the apiserver echoes a create) at RequestResponse.
    """
    path = f"/api/v1/namespaces/{namespace}/{resource}/{name}"
    if subresource:
        path += f"/{subresource}"
    object_ref = {"resource": resource, "namespace": namespace, "name": name, "apiVersion": "v1"}
    if subresource:
        object_ref["subresource"] = subresource
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": str(uuid.uuid4()),
        "stage": stage,
        "requestURI": f"{path}?{uri_query}" if uri_query else path,
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.5"],
        "userAgent": "kubectl/v1.31.0 (linux/amd64) kubernetes/9edcffc",
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-12-01T22:00:00.000000Z",
        "stageTimestamp": "2026-12-01T22:00:00.020000Z",
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": 'RBAC: allowed by ClusterRoleBinding "admins"',
        },
    }
    if body is not None and level in ("Request", "RequestResponse"):
        event["requestObject"] = body
    if body is not None and level == "RequestResponse":
        event["responseObject"] = body
    return event
