"""The charm's cluster side in Scenario, for faults the real kube-apiserver cannot give on demand.

Everything else of the cluster side runs against the real apiserver in
tests/unit/apiserver/test_charm_cluster.py; here lightkube talks HTTP to the stand-in on
127.0.0.1 (kube_api.py), which answers 503 where asked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from charm_pod import unit_state
from fakes.fake_kube_api import FakeApiServer, status
from ops import testing

NS = "audit"
NAME = "falco-k8s-audit-webhook"
SERVICE = f"/api/v1/namespaces/{NS}/services/{NAME}"
CONFIGMAP = f"/api/v1/namespaces/{NS}/configmaps/{NAME}"


def configure(ctx, fs, *, leader: bool = True, **config: Any) -> testing.State:
    return ctx.run(ctx.on.config_changed(), unit_state(fs, NS, leader=leader, **config))


def test_api_server_error_waits_and_retries(ctx, falco_fs, kube_api: FakeApiServer):
    kube_api.failures["PATCH", SERVICE] = status(503, "etcd leader changed")

    out = configure(ctx, falco_fs)

    assert out.unit_status == testing.WaitingStatus(
        "apply Service failed: HTTP 503: etcd leader changed; will retry"
    )


def test_a_failed_deletion_on_remove_is_logged_not_raised(ctx, falco_fs, kube_api, caplog):
    out = configure(ctx, falco_fs, webhook_allowed_cidrs="10.0.0.0/8")
    kube_api.failures["DELETE", CONFIGMAP] = status(503, "etcd leader changed")

    # The remove hook is the unit's last: it must end cleanly for the unit to go away.
    ctx.run(ctx.on.remove(), dataclasses.replace(out, planned_units=0))

    assert "could not delete the audit webhook objects" in caplog.text
    assert "etcd leader changed" in caplog.text
