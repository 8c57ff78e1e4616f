"""Fixtures for the intake's tests: the real k8saudit behind it, and a TLS certificate for it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins"))  # the plugin harness

import built_plugins
from falco_plugin_api import Plugin
from intake_helpers import FalcoLoop
from tls_ca import TestCa

# The real k8saudit, shared with the other conftests that load it.
k8saudit = built_plugins.k8saudit


@pytest.fixture
def falco(k8saudit: Plugin) -> Iterator[FalcoLoop]:
    """The real k8saudit on a free loopback port, read continuously as Falco reads it."""
    with FalcoLoop.running(k8saudit) as loop:
        yield loop


@pytest.fixture(scope="session")
def ca() -> TestCa:
    return TestCa("certificates provider CA")


@pytest.fixture
def webhook_pem(ca: TestCa, tmp_path: Path) -> Path:
    """The intake's certificate for 127.0.0.1, its chain and key, in one PEM (as the charm's)."""
    certificate, key = ca.server_pem(("127.0.0.1",))
    path = tmp_path / "webhook.pem"
    path.write_text(certificate + ca.pem + key)
    path.chmod(0o600)
    return path
