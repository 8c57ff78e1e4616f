"""How long the real kube-apiserver keeps retrying an audit batch its webhook could not deliver.

The apiserver (v1.34.4, built by tox) runs the charm's get-webhook-config outputs byte for byte
(https, the charm's own CA, the token), with ``--audit-webhook-initial-backoff`` set to each
value asked for, and posts to a listener that is down, as the intake is while its pod is gone:
it takes the TLS handshake with the charm's certificate, reads each POST, notes which audit
events it carried and when, and closes the connection without an answer (a transport error,
which the webhook client retries exactly as a refused connection: k8s.io/apiserver
plugin/pkg/audit/webhook retryOnError). Marker ConfigMaps made a few seconds apart give one
sample each of the schedule: the times of every try of the batch holding the marker, until
the apiserver gives it up (its log names the lost events).

A listener outage loses a batch when the listener comes back after that batch's last try: the
window printed (first try to last try) is the longest outage a batch sent at its start survives.

    .tox/unit/bin/python benchmarks/webhook_outage_window.py [--backoff 10s 20s] [--markers 5]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (
    "src",
    "tests/unit",
    "tests/unit/plugins",
    "tests/unit/forwarder",
    "tests/unit/apiserver",
):
    sys.path.insert(0, str(ROOT / path))

from audit_path import (  # noqa: E402
    charm_apiserver_side,
    leaders_credentials,
    listener_address,
    webhook_args,
)
from kube_apiserver import ALICE, running_etcd, running_kube_apiserver  # noqa: E402


class DownListener:
    """Reads each webhook POST, records (time, audit IDs), and drops the connection unanswered."""

    def __init__(self, workdir: Path) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.address = listener_address(self.port)
        self.credentials = leaders_credentials(self.address)
        tls = self.credentials.serving_tls()
        assert tls is not None
        self.tls = tls
        pem = workdir / "webhook.pem"
        pem.write_bytes(tls.pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(pem))
        self.tries: dict[str, list[float]] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, raw: socket.socket) -> None:
        with raw, contextlib.suppress(OSError, ValueError):
            conn = self.context.wrap_socket(raw, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            now = time.monotonic()
            for event in json.loads(body)["items"]:
                self.tries.setdefault(event["auditID"], []).append(now)


def measure(backoff: str, markers: int, spacing: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, running_etcd(Path(tmp) / "etcd") as etcd:
        down = DownListener(Path(tmp))
        side = charm_apiserver_side(down.address, down.tls.ca_cert, down.credentials.token)
        args = webhook_args(
            side, Path(tmp) / "falco", f"--audit-webhook-initial-backoff={backoff}"
        )
        with running_kube_apiserver(etcd, Path(tmp) / "kube-apiserver", args=args) as apiserver:
            ids = []
            with apiserver.http(ALICE) as http:
                for index in range(markers):
                    body = {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": f"m{index}"},
                    }
                    reply = http.post("/api/v1/namespaces/default/configmaps", json=body)
                    ids.append(reply.headers["Audit-Id"])
                    time.sleep(spacing)
            deadline = time.monotonic() + 10 * float(backoff.rstrip("s")) + 60
            while time.monotonic() < deadline and not all(
                any(
                    i in part
                    for part in apiserver.log.read_text().split("Error in audit plugin")[1:]
                )
                for i in ids
            ):
                time.sleep(1)
            log = apiserver.log.read_text()
        windows = []
        for audit_id in ids:
            tries = down.tries.get(audit_id, [])
            gaps = [round(b - a, 1) for a, b in itertools.pairwise(tries)]
            given_up = any(audit_id in part for part in log.split("Error in audit plugin")[1:])
            window = tries[-1] - tries[0] if tries else float("nan")
            windows.append(window)
            print(
                f"  backoff {backoff}: {len(tries)} tries, gaps {gaps} s,"
                f" last try {window:.1f} s after the first, given up and logged: {given_up}"
            )
        span = f"{min(windows):.1f}-{max(windows):.1f} s"
        print(f"backoff {backoff}: window {span} over {len(ids)} markers")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backoff", nargs="+", default=["10s", "20s"])
    parser.add_argument("--markers", type=int, default=4)
    parser.add_argument("--spacing", type=float, default=6.0, help="seconds between markers")
    options = parser.parse_args()
    for backoff in options.backoff:
        measure(backoff, options.markers, options.spacing)


if __name__ == "__main__":
    main()
