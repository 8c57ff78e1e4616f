"""The audit intake in the forwarder container: its code, certificate, config and Pebble service.

Usable outside a charm: a `Workload` and plain data in. A new certificate or token set is
applied in place (SIGHUP); only new code or a changed listener restarts the intake, and the
batches it keeps on the alert-log volume wait for it meanwhile.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from audit_intake.bearer import MISMATCHED, UNAUTHENTICATED
from audit_intake.config import AcceptedToken, IntakeConfig, config_to_dict
from audit_intake.metrics import DROPPED_EVENTS, REFUSED, SPOOL_FULL, read_series
from constants import (
    INTAKE_CONFIG,
    INTAKE_LISTEN_HOST,
    INTAKE_METRICS_PORT,
    INTAKE_PEM,
    INTAKE_PKG_DIR,
    INTAKE_SERVICE,
    INTAKE_SPOOL_DIR,
    K8SAUDIT_LOOPBACK,
    K8SAUDIT_MAX_BATCH_BYTES,
    K8SAUDIT_PATH,
    K8SAUDIT_PORT,
    MIB,
    WEBHOOK_PORT,
)
from payload import Payload, manifest_digest
from pod_metrics import read_metrics
from workload import Workload

# Where the charm reads the intake's metrics (pod loopback); tests point it elsewhere.
METRICS_PORT = INTAKE_METRICS_PORT
# What the intake keeps for Falco while it is down or behind. The apiserver's ceiling (10
# batches a second of ~1 MB) would fill it in half a minute, a quiet cluster in hours; it
# leaves the alert log most of the storage's 1 GiB minimum. Past it, posts get 503 and the
# apiserver retries them for its own ~80 s.
SPOOL_MAX_BYTES = 256 * MIB
# A batch k8saudit answered 200 for settles once its connection stayed open this long: k8saudit
# queues at most 50 batches, which Falco (9,000-10,000 events/s on one core) drains in ~2 s.
SETTLE_SECONDS = 10.0


def intake_config(tokens: tuple[AcceptedToken, ...]) -> IntakeConfig:
    """The intake on the Service's port with TLS and ``tokens``, in front of k8saudit."""
    return IntakeConfig(
        webhook_host=INTAKE_LISTEN_HOST,
        webhook_port=WEBHOOK_PORT,
        webhook_path=K8SAUDIT_PATH,
        tls_pem=Path(INTAKE_PEM),
        tokens=tokens,
        k8saudit_url=f"http://{K8SAUDIT_LOOPBACK}:{K8SAUDIT_PORT}{K8SAUDIT_PATH}",
        spool_dir=Path(INTAKE_SPOOL_DIR),
        spool_max_bytes=SPOOL_MAX_BYTES,
        max_batch_bytes=K8SAUDIT_MAX_BATCH_BYTES,
        settle_seconds=SETTLE_SECONDS,
        metrics_host=INTAKE_LISTEN_HOST,
        metrics_port=INTAKE_METRICS_PORT,
    )


def intake_layer(code_digest: str, listener_digest: str) -> dict[str, Any]:
    """The intake's service; new code or a new listener (their digests) restarts it."""
    return {
        "summary": "Audit intake",
        "services": {
            INTAKE_SERVICE: {
                "override": "replace",
                "summary": "Takes kube-apiserver's audit batches for Falco (TLS, bearer token)",
                "command": f"python3 -m audit_intake --config {INTAKE_CONFIG}",
                "startup": "enabled",
                "environment": {
                    "PYTHONPATH": INTAKE_PKG_DIR,
                    "AUDIT_INTAKE_CODE_SHA256": code_digest,
                    "AUDIT_INTAKE_LISTENER_SHA256": listener_digest,
                },
                "on-check-failure": {"intake-healthz": "restart"},
            }
        },
        "checks": {
            "intake-healthz": {
                "override": "replace",
                "level": "alive",
                "period": "10s",
                "threshold": 3,
                "http": {"url": f"http://127.0.0.1:{INTAKE_METRICS_PORT}/healthz"},
            }
        },
    }


def converge(
    intake: Workload, payload: Payload, pem: bytes, tokens: tuple[AcceptedToken, ...]
) -> bool:
    """Run the intake on ``pem`` and ``tokens``; True when it already ran on them.

    Raises WorkloadError when the container goes away or stalls mid-change.
    """
    intake.sync_tree(
        payload.intake, payload.intake_manifest, manifest_path=f"{INTAKE_PKG_DIR}/.manifest"
    )
    config = intake_config(tokens)
    # Mode 0600: the private key, and the tokens' hashes.
    new_pem = intake.push_if_changed(INTAKE_PEM, pem, permissions=0o600)
    text = json.dumps(config_to_dict(config), indent=1, sort_keys=True)
    new_config = intake.push_if_changed(INTAKE_CONFIG, text, permissions=0o600)
    listener = json.dumps(config_to_dict(config.static_part()), sort_keys=True)
    layer = intake_layer(
        manifest_digest(payload.intake_manifest), hashlib.sha256(listener.encode()).hexdigest()
    )
    started = intake.ensure_service(layer)
    if (new_pem or new_config) and not started:
        intake.signal("SIGHUP")
    return not (started or new_pem or new_config)


def intake_notes() -> list[str]:
    """What the intake's own counts (since it started) say is worth a look."""
    text = read_metrics(METRICS_PORT)
    if text is None:
        return ["audit intake not answering"]
    refused = read_series(text, REFUSED)
    notes: list[str] = []
    if turned_away := refused.get(UNAUTHENTICATED, 0) + refused.get(MISMATCHED, 0):
        notes.append(f"{turned_away:.0f} audit posts refused: no or wrong token")
    if full := refused.get(SPOOL_FULL, 0):
        notes.append(f"{full:.0f} audit posts refused: intake spool full")
    if dropped := sum(read_series(text, DROPPED_EVENTS).values()):
        notes.append(f"{dropped:.0f} audit events refused by k8saudit")
    return notes
