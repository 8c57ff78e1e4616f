"""Stand-ins for what sits between kube-apiserver and the units, where it cannot run here.

`RandomBalancer` is kube-proxy in iptables mode as far as balancing goes: each new TCP
connection to the Service goes to one endpoint picked at random (its ``statistic --mode random``
rules, kubernetes pkg/proxy/iptables/proxier.go, v1.34), and stays there; bytes pass untouched.

`WebhookClient` is kube-apiserver's audit webhook client as far as connections go: Go's
``net/http`` Transport reuses an idle kept-alive connection for the next request and dials a
new one when none is idle or the server answered ``Connection: close``; batches are sent
concurrently, one goroutine each (k8s.io/apiserver plugin/pkg/audit/buffered/buffered.go,
``AsyncDelegate``, v0.34.4). The intake's own tests use it to send many small batches on demand;
tests/unit/apiserver/ drives the real apiserver through the same balancer.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import select
import socket
import ssl
import threading
from collections import Counter


class RandomBalancer:
    """Relays each connection on 127.0.0.1:``port`` to one of ``backends``, picked at random."""

    def __init__(self, backends: list[int], seed: int = 20, port: int = 0):
        self.backends = backends
        self.connections: Counter[int] = Counter()
        self._random = random.Random(seed)
        self._server = socket.create_server(("127.0.0.1", port))
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        self._server.close()
        self._thread.join()

    def __enter__(self) -> RandomBalancer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            backend = self._random.choice(self.backends)
            self.connections[backend] += 1
            threading.Thread(target=_relay, args=(client, backend), daemon=True).start()


def _relay(client: socket.socket, backend: int) -> None:
    """Pass bytes both ways until either side closes, then close both."""
    with client, contextlib.suppress(OSError):
        upstream = socket.create_connection(("127.0.0.1", backend))
        with upstream:
            ends = [client, upstream]
            while True:
                readable, _, _ = select.select(ends, [], [], 60)
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is client else client).sendall(data)
                if not readable:
                    return


class WebhookClient:
    """Posts batches to ``port`` as the apiserver's webhook client does, reusing connections."""

    def __init__(
        self, port: int, token: str, path: str, context: ssl.SSLContext | None = None
    ) -> None:
        self._port = port
        self._path = path
        self._context = context
        self._headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "User-Agent": "Go-http-client/1.1",
        }
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.dialed = 0

    def post(self, body: bytes) -> int:
        """One batch; the connection goes back to the idle pool unless the server closes it."""
        connection = self._connection()
        try:
            connection.request("POST", f"{self._path}?timeout=30s", body, self._headers)
            response = connection.getresponse()
            response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            with self._lock:
                self._idle.append(connection)
        return response.status

    def close(self) -> None:
        with self._lock:
            for connection in self._idle:
                connection.close()
            self._idle.clear()

    def _connection(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self.dialed += 1
        if self._context is not None:
            return http.client.HTTPSConnection(
                "127.0.0.1", self._port, timeout=30, context=self._context
            )
        return http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
