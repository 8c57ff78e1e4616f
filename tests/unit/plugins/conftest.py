"""Fixtures for the tests against the real plugins, built by tools/fetch_falco_plugins.py.

The plugins and their settings come from the build and the charm's own renderers; a missing build
fails the tests, it never skips them.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import built_plugins
import pytest
import yaml
from falco_plugin_api import Plugin
from k8saudit_listener import K8sAuditListener, loopback_params, open_k8saudit

from constants import CHARM_RULES_FILE, FALCO_RULES_D, K8S_AUDIT_RULES
from falco._falco_yaml import FalcoSettings, render_falco_yaml
from webhook._apiserver_side import WebhookAddress, webhook_kubeconfig

ROOT = Path(__file__).resolve().parents[3]

# The real plugins' session fixtures, shared with the other conftests that load them.
json_plugin, k8saudit, stock_rules = (
    built_plugins.json_plugin,
    built_plugins.k8saudit,
    built_plugins.stock_rules,
)


@pytest.fixture(scope="session")
def charm_rules() -> list[dict[str, Any]]:
    """The charm's own rules file, as the charm ships it."""
    return yaml.safe_load((ROOT / CHARM_RULES_FILE).read_text())


@pytest.fixture(scope="session")
def rendered_plugins() -> dict[str, dict[str, Any]]:
    """The ``plugins`` entries of the falco.yaml the charm renders, by name."""
    config = yaml.safe_load(render_falco_yaml(FalcoSettings(), (K8S_AUDIT_RULES, FALCO_RULES_D)))
    return {entry["name"]: entry for entry in config["plugins"]}


@pytest.fixture(scope="session")
def webhook_path() -> str:
    """The path kube-apiserver posts to, read from the kubeconfig the charm hands out."""
    address = WebhookAddress("ClusterIP", "10.152.183.77")
    kubeconfig = yaml.safe_load(webhook_kubeconfig(address, "CA PEM", "token"))
    return urlsplit(kubeconfig["clusters"][0]["cluster"]["server"]).path


@pytest.fixture
def rendered_port_lock(rendered_plugins: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Serialise tests on this machine that listen on the rendered port itself (9766).

    Worktrees of this repo may run the suite at once; any other holder of the port fails the
    test through the plugin's own listen error.
    """
    port = urlsplit(rendered_plugins["k8saudit"]["open_params"]).port
    lock_path = Path(tempfile.gettempdir()) / f"falco-k8s-test-port-{port}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def k8saudit_source(
    k8saudit: Plugin,
) -> Callable[[dict[str, Any], str], AbstractContextManager[K8sAuditListener]]:
    """Open the real k8saudit with the given settings, moved to a free 127.0.0.1 port."""

    @contextmanager
    def source(init_config: dict[str, Any], open_params: str) -> Iterator[K8sAuditListener]:
        params, _ = loopback_params(open_params)
        with open_k8saudit(k8saudit, init_config, params) as listener:
            yield listener

    return source
