"""Fixtures for the tests against the real kube-apiserver (tools/install-kube-apiserver builds it).

One etcd and one apiserver for the cluster side serve the whole session. Each test module of
the audit path starts its own apiserver with the charm's webhook files
(`audit_path.running_audit_path`), on the same etcd; ``start_apiserver`` starts one with any
other flags for the rest of the session. A missing build fails the tests, it never skips them.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Service
from lightkube.resources.networking_v1 import NetworkPolicy
from ops import testing

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins"))  # the plugin harness
sys.path.insert(0, str(Path(__file__).parents[1] / "forwarder"))  # free_port

import built_plugins
from kube_apiserver import (
    TRUSTED,
    Etcd,
    HarnessError,
    KubeApiServer,
    running_etcd,
    running_kube_apiserver,
)

from charm import FalcoK8sCharm
from webhook import _cluster as cluster

# The cluster side's own audit log: every request at Metadata, to count the charm's writes.
LOG_EVERY_REQUEST = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""

StartApiServer = Callable[..., KubeApiServer]

# The real plugins' session fixtures, shared with the other conftests that load them.
json_plugin, k8saudit, stock_rules = (
    built_plugins.json_plugin,
    built_plugins.k8saudit,
    built_plugins.stock_rules,
)


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    try:
        with running_etcd(tmp_path_factory.mktemp("etcd")) as running:
            yield running
    except HarnessError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def start_apiserver(
    etcd: Etcd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartApiServer]:
    """Start another apiserver with extra flags for the rest of the session (stopped at its end).

    Call as ``start_apiserver(args=[...], audit_log_policy=None)``.
    """
    with ExitStack() as stack:

        def start(
            *, args: Sequence[str] = (), audit_log_policy: str | None = None
        ) -> KubeApiServer:
            try:
                return stack.enter_context(
                    running_kube_apiserver(
                        etcd,
                        tmp_path_factory.mktemp("kube-apiserver"),
                        args=args,
                        audit_log_policy=audit_log_policy,
                    )
                )
            except HarnessError as exc:
                pytest.fail(str(exc))

        yield start


@pytest.fixture(scope="session")
def kube_apiserver(start_apiserver: StartApiServer) -> KubeApiServer:
    """The cluster side's apiserver, logging every request to its audit log."""
    return start_apiserver(audit_log_policy=LOG_EVERY_REQUEST)


_names = itertools.count()


@pytest.fixture
def namespace(kube_apiserver: KubeApiServer) -> Iterator[str]:
    """A fresh namespace (a Juju model); what a test left in it is deleted after.

    Deleted explicitly: without a controller-manager a deleted namespace never empties, and a
    Service left behind would keep its node port and cluster IP taken.
    """
    name = f"model-{next(_names)}"
    kube_apiserver.create_namespace(name)
    yield name
    admin = kube_apiserver.client()
    for resource in (NetworkPolicy, ConfigMap, Service, Pod):
        for item in admin.list(resource, namespace=name):
            assert item.metadata is not None
            try:
                admin.delete(resource, item.metadata.name or "", namespace=name)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
    admin.delete(Namespace, name)


@pytest.fixture(autouse=True)
def _close_charm_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close the lightkube clients the charm's code made, as the hook's process exit would.

    The real apiserver keeps connections alive; an unclosed one would warn at garbage collection.
    """
    made: list[Client] = []

    class Closing(Client):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(cluster, "Client", Closing)
    yield
    for client in made:
        client.close()


@pytest.fixture
def as_user(
    kube_apiserver: KubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], None]:
    """Point KUBECONFIG (what the charm's lightkube client loads) at an identity."""

    def use(user: str) -> None:
        path = kube_apiserver.write_kubeconfig(user, tmp_path / f"kubeconfig-{user}")
        monkeypatch.setenv("KUBECONFIG", str(path))

    return use


@pytest.fixture
def trusted(as_user: Callable[[str], None]) -> None:
    """The charm's service account after ``juju trust falco-k8s --scope=cluster``."""
    as_user(TRUSTED)


@pytest.fixture
def ctx(charm_root: Path, falco_metrics: object, trusted: None) -> testing.Context[FalcoK8sCharm]:
    """The charm in Scenario, its lightkube client reaching the real apiserver as trusted."""
    return testing.Context(FalcoK8sCharm, charm_root=charm_root)
