"""How the real kube-apiserver delivers to the real k8saudit with the charm's files.

Over http and over https (a certificate as the certificates relation issues it): events arrive,
and every batch travels on one kept-alive connection (issue 20 builds its load spreading on
this). A listener outage shorter than the apiserver's retry window loses nothing; a longer one
loses the batch after its fifth try. The outage tests shorten the initial backoff to 1 s (window
~8-10 s instead of ~81-97 s); benchmarks/webhook_outage_window.py measures the real window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from audit_path import AuditPath, running_audit_path
from falco_plugin_api import Plugin
from kube_apiserver import ALICE, Etcd

BATCH = 400  # the charm's --audit-webhook-batch-max-size
BATCHES = 6


def create_audited(path: AuditPath, name: str) -> str:
    """Create a ConfigMap as alice; the audit ID the apiserver gave the request."""
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    with path.apiserver.http(ALICE) as http:
        reply = http.post("/api/v1/namespaces/default/configmaps", json=body)
    assert reply.status_code == 201, reply.text
    return reply.headers["Audit-Id"]


def given_up(path: AuditPath, audit_id: str) -> bool:
    """Whether the apiserver dropped the batch holding ``audit_id`` (it logs every event)."""
    text = path.apiserver.log.read_text()
    return any(
        audit_id in part for part in text.split("Error in audit plugin 'webhook' affecting ")[1:]
    )


def by_id(audit_id: str) -> Any:
    return lambda event: event["auditID"] == audit_id


def webhook_host(path: AuditPath) -> str:
    return path.side["webhook-config"].split("://", 1)[1].split("/", 1)[0]


def wait_posts(path: AuditPath, code: str, at_least: int, timeout: float = 60) -> int:
    """Poll the apiserver's count of webhook POSTs answered ``code`` until ``at_least``."""
    deadline = time.monotonic() + timeout
    while True:
        count = path.apiserver.webhook_posts(webhook_host(path)).get(code, 0)
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


@pytest.fixture(scope="module", params=["http", "https"])
def counted_path(
    request: pytest.FixtureRequest,
    etcd: Etcd,
    tmp_path_factory: pytest.TempPathFactory,
    k8saudit: Plugin,
    json_plugin: Plugin,
) -> Iterator[AuditPath]:
    with running_audit_path(
        etcd,
        tmp_path_factory.mktemp(request.param),
        k8saudit,
        json_plugin,
        tls=request.param == "https",
        count_connections=True,
    ) as path:
        yield path


def test_a_users_action_arrives_over_the_kubeconfigs_scheme(
    counted_path: AuditPath, request: pytest.FixtureRequest
):
    kubeconfig = counted_path.side["webhook-config"]
    scheme = request.node.callspec.params["counted_path"]

    [(_, event)] = counted_path.stream.wait_for(by_id(create_audited(counted_path, "arrives")))

    assert f"server: {scheme}://127.0.0.1:" in kubeconfig
    assert ("certificate-authority-data" in kubeconfig) is (scheme == "https")
    assert event["user"]["username"] == ALICE
    assert event["level"] == "RequestResponse"
    assert event["requestObject"]["metadata"]["name"] == "arrives"


def test_every_batch_travels_on_one_kept_alive_connection(counted_path: AuditPath):
    """Batches one after the other (the apiserver's steady state): one connection for all."""
    host = webhook_host(counted_path)
    posted = wait_posts(counted_path, "200", 1)
    with counted_path.apiserver.http(ALICE) as http:
        for _ in range(BATCHES):
            for _ in range(BATCH):  # a full batch of Metadata gets
                http.get("/api/v1/namespaces/default/configmaps/absent")
            posted = wait_posts(counted_path, "200", posted + 1)

    assert counted_path.apiserver.webhook_posts(host).get("200", 0) >= BATCHES
    assert counted_path.connections is not None
    assert counted_path.connections.accepted == 1


# -- listener outage, with the retry window shortened -------------------------------------------

SHORT = ["--audit-webhook-initial-backoff=1s", "--audit-webhook-batch-max-wait=1s"]


@pytest.fixture(scope="module")
def short_path(
    etcd: Etcd, tmp_path_factory: pytest.TempPathFactory, k8saudit: Plugin, json_plugin: Plugin
) -> Iterator[AuditPath]:
    with running_audit_path(
        etcd,
        tmp_path_factory.mktemp("outage"),
        k8saudit,
        json_plugin,
        count_connections=True,
        args=SHORT,
    ) as path:
        yield path


def test_an_outage_inside_the_retry_window_loses_nothing(short_path: AuditPath):
    assert short_path.stream.wait_for(by_id(create_audited(short_path, "before")))
    assert short_path.connections is not None
    dropped = short_path.connections.dropped
    short_path.stop_listener()

    during = create_audited(short_path, "during")
    deadline = time.monotonic() + 30
    while short_path.connections.dropped == dropped and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)  # a retry or two fail too; the fifth try comes >= 8.1 s after the first
    short_path.start_listener()

    assert short_path.connections.dropped > dropped  # the apiserver met the outage
    assert short_path.stream.wait_for(by_id(during), timeout=30)
    assert not given_up(short_path, during)


def test_an_outage_past_the_fifth_try_loses_the_batch(short_path: AuditPath):
    assert short_path.stream.wait_for(by_id(create_audited(short_path, "first")))
    short_path.stop_listener()

    lost = create_audited(short_path, "lost")
    deadline = time.monotonic() + 60
    while not given_up(short_path, lost) and time.monotonic() < deadline:
        time.sleep(0.2)
    short_path.start_listener()
    after = create_audited(short_path, "after")

    assert given_up(short_path, lost)
    assert short_path.stream.wait_for(by_id(after))
    assert not short_path.stream.wait_for(by_id(lost), timeout=0)
