"""How the real kube-apiserver delivers through the charm's intake to the real k8saudit.

With the charm's kubeconfig (https, the CA, the token; the charm's own CA or a provider's),
events arrive, and every batch comes on a connection of its own: spread over three units by a
per-connection random balancer (kube-proxy), each takes about a third. Without the token, or
with a wrong one, every post is answered 401 and nothing reaches Falco. A Falco outage longer
than the apiserver's retry window loses nothing: the intake keeps the batches. An outage of the
intake itself (the pod's listener) is the apiserver's to retry: shorter than its window it
loses nothing, longer it loses the batch. The outage tests shorten the initial backoff to 1 s
(window ~8-10 s instead of ~170 s); benchmarks/webhook_outage_window.py measures the real one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from audit_path import NO_TOKEN, AuditPath, running_audit_path
from falco_plugin_api import Plugin
from kube_apiserver import ALICE, Etcd

from audit_intake import metrics

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


@pytest.fixture(scope="module", params=["own-ca", "provider-ca"])
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
        provider_ca=request.param == "provider-ca",
        count_connections=True,
    ) as path:
        yield path


def test_with_the_charms_kubeconfig_a_users_action_arrives(counted_path: AuditPath):
    kubeconfig = yaml.safe_load(counted_path.side["webhook-config"])

    [(_, event)] = counted_path.stream.wait_for(by_id(create_audited(counted_path, "arrives")))

    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert "certificate-authority-data" in cluster
    assert kubeconfig["users"][0]["user"]["token"] == counted_path.credentials.token
    assert event["user"]["username"] == ALICE
    assert event["level"] == "RequestResponse"
    assert event["requestObject"]["metadata"]["name"] == "arrives"


def test_every_batch_comes_on_a_connection_of_its_own(counted_path: AuditPath):
    """The intake closes each connection: kube-proxy then balances every batch on its own."""
    assert counted_path.connections is not None
    posted = wait_posts(counted_path, "200", 1)
    before = counted_path.connections.accepted
    with counted_path.apiserver.http(ALICE) as http:
        for _ in range(BATCHES):
            for _ in range(BATCH):  # a full batch of Metadata gets
                http.get("/api/v1/namespaces/default/configmaps/absent")
            posted = wait_posts(counted_path, "200", posted + 1)
    after = counted_path.connections.accepted
    now_posted = wait_posts(counted_path, "200", posted)

    assert after - before >= BATCHES
    # One connection per post: the apiserver's own count of posts matches the relay's.
    assert counted_path.connections.accepted == now_posted


@pytest.fixture(scope="module", params=[NO_TOKEN, "an-old-token"], ids=["no-token", "wrong"])
def refused_path(
    request: pytest.FixtureRequest,
    etcd: Etcd,
    tmp_path_factory: pytest.TempPathFactory,
    k8saudit: Plugin,
    json_plugin: Plugin,
) -> Iterator[AuditPath]:
    with running_audit_path(
        etcd,
        tmp_path_factory.mktemp("refused"),
        k8saudit,
        json_plugin,
        apiserver_token=request.param,
    ) as path:
        yield path


def test_without_the_token_or_with_a_wrong_one_every_post_is_401_and_nothing_reaches_falco(
    refused_path: AuditPath,
):
    create_audited(refused_path, "refused")

    refused = wait_posts(refused_path, "401", 2)
    refused_path.stream.read()

    assert refused >= 2
    assert refused_path.apiserver.webhook_posts(webhook_host(refused_path)).get("200", 0) == 0
    assert refused_path.stream.events == []
    counted = {
        reason: refused_path.intake.metrics.value(metrics.REFUSED, reason=reason)
        for reason in ("unauthenticated", "wrong_token")
    }
    assert sum(counted.values()) >= refused
    assert refused_path.intake.metrics.value(metrics.BATCHES) == 0


# -- several units behind kube-proxy ------------------------------------------------------------

# One event a batch, and the throttle raised: hundreds of batches from hundreds of requests.
MANY_BATCHES = [
    "--audit-webhook-batch-max-size=1",
    "--audit-webhook-batch-throttle-qps=200",
    "--audit-webhook-batch-throttle-burst=200",
]
REQUESTS = 600


def test_three_units_behind_a_random_balancer_each_take_a_third_of_the_batches(
    etcd: Etcd, tmp_path_factory: pytest.TempPathFactory, k8saudit: Plugin, json_plugin: Plugin
):
    with running_audit_path(
        etcd,
        tmp_path_factory.mktemp("units"),
        k8saudit,
        json_plugin,
        units=3,
        args=MANY_BATCHES,
    ) as path:
        with path.apiserver.http(ALICE) as http:
            for _ in range(REQUESTS):
                http.get("/api/v1/namespaces/default/configmaps/absent")
        posted = wait_posts(path, "200", REQUESTS, timeout=120)
        time.sleep(2)  # the last posts' counts
        taken = [int(intake.metrics.value(metrics.BATCHES)) for intake in path.intakes]
        assert path.balancer is not None
        connections = sorted(path.balancer.connections.values())

    total = sum(taken)
    print(f"batches per unit: {taken} of {total}; connections per unit: {connections}")
    assert posted >= REQUESTS
    assert total >= REQUESTS
    assert all(0.8 * total / 3 <= count <= 1.2 * total / 3 for count in taken), taken


# -- outages, with the retry window shortened ---------------------------------------------------

SHORT = ["--audit-webhook-initial-backoff=1s", "--audit-webhook-batch-max-wait=1s"]
WINDOW_SECONDS = 10  # the fifth try comes 8.1-9.75 s after the first


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


def test_a_falco_outage_past_the_apiservers_retry_window_loses_nothing(short_path: AuditPath):
    assert short_path.stream.wait_for(by_id(create_audited(short_path, "before")))
    short_path.stop_falco()

    during = create_audited(short_path, "while-falco-is-down")
    time.sleep(WINDOW_SECONDS + 2)  # the apiserver would have given up by now
    short_path.start_falco()

    assert short_path.stream.wait_for(by_id(during), timeout=30)
    assert not given_up(short_path, during)  # the intake answered 200 once it kept it


def test_an_intake_outage_inside_the_retry_window_loses_nothing(short_path: AuditPath):
    assert short_path.stream.wait_for(by_id(create_audited(short_path, "before-intake")))
    assert short_path.connections is not None
    dropped = short_path.connections.dropped
    short_path.stop_intake()

    during = create_audited(short_path, "during")
    deadline = time.monotonic() + 30
    while short_path.connections.dropped == dropped and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)  # a retry or two fail too; the fifth try comes >= 8.1 s after the first
    short_path.start_intake()

    assert short_path.connections.dropped > dropped  # the apiserver met the outage
    assert short_path.stream.wait_for(by_id(during), timeout=30)
    assert not given_up(short_path, during)


def test_an_intake_outage_past_the_fifth_try_loses_the_batch(short_path: AuditPath):
    assert short_path.stream.wait_for(by_id(create_audited(short_path, "first")))
    short_path.stop_intake()

    lost = create_audited(short_path, "lost")
    deadline = time.monotonic() + 60
    while not given_up(short_path, lost) and time.monotonic() < deadline:
        time.sleep(0.2)
    short_path.start_intake()
    after = create_audited(short_path, "after")

    assert given_up(short_path, lost)
    assert short_path.stream.wait_for(by_id(after))
    assert not short_path.stream.wait_for(by_id(lost), timeout=0)
