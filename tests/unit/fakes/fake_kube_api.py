"""A stand-in for kube-apiserver at lightkube's HTTP layer, for what the real one cannot give.

The charm's cluster side is tested against the real kube-apiserver (tests/unit/apiserver/). This
stand-in stays for two things the real one cannot give: faults on demand (a 409 conflict, 429,
5xx with or without a Status body: ``failures``), and a fixed backdrop for the Scenario tests
whose subject is not the cluster (Falco, sinks, COS, TLS), whose random model names are not
valid namespaces and whose statuses name a fixed webhook address (``ALLOCATED_IP``).

It models what the charm relies on, from the Kubernetes API conventions (kubernetes v1.31,
``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`` for server-side apply and
``staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go`` for ``Status``): GET of a named
object or a 404 ``Status``, server-side apply by PATCH returning the object (a Service gets its
allocated cluster IP and node port), DELETE answering a ``Success`` status. Used two ways:
behind lightkube's own transport hook (adapter tests), and behind a real HTTP server on
127.0.0.1 that the charm reaches through KUBECONFIG (charm tests).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from loopback_http import QuietHandler, serving

ALLOCATED_IP = "10.152.183.77"
ALLOCATED_NODE_PORT = 30765


def status(code: int, message: str) -> httpx2.Response:
    """A Status reply as the API server sends it for a failure."""
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message}
    return httpx2.Response(code, json={**body, "code": code})


class FakeApiServer:
    """Keeps applied objects, allocates Service addresses, records every request."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx2.Request] = []
        self.failures: dict[tuple[str, str], httpx2.Response] = {}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        failure = self.failures.get((request.method, path))
        if failure is not None:
            return failure
        if request.method == "PATCH":
            return self._apply(path, json.loads(request.content))
        if path not in self.objects:
            kind, name = path.rsplit("/", 2)[-2:]
            return status(404, f"{kind} {name!r} not found")
        if request.method == "DELETE":
            del self.objects[path]
            return httpx2.Response(200, json={"kind": "Status", "status": "Success"})
        return httpx2.Response(200, json=self.objects[path])

    def _apply(self, path: str, body: dict[str, Any]) -> httpx2.Response:
        live = copy.deepcopy(body)
        if body["kind"] == "Service":
            spec = live["spec"]
            previous = self.objects.get(path, {}).get("spec", {}).get("clusterIP")
            spec.setdefault("clusterIP", previous or ALLOCATED_IP)
            if spec["type"] == "NodePort":
                for port in spec["ports"]:
                    port.setdefault("nodePort", ALLOCATED_NODE_PORT)
        self.objects[path] = live
        return httpx2.Response(200, json=live)

    def sent(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.path) for r in self.requests]


@contextmanager
def serve(api: FakeApiServer) -> Iterator[str]:
    """Run ``api`` behind a real HTTP server on 127.0.0.1; yield its base URL."""

    class Handler(QuietHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = httpx2.Request(
                self.command,
                f"http://127.0.0.1{self.path}",
                headers=dict(self.headers.items()),
                content=self.rfile.read(length),
            )
            response = api(request)
            body = response.read()
            self.send_response(response.status_code)
            self.send_header(
                "Content-Type", response.headers.get("Content-Type", "application/json")
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PATCH = do_DELETE = do_POST = _answer  # noqa: N815 - http.server's names

    with serving(Handler) as port:
        yield f"http://127.0.0.1:{port}"
