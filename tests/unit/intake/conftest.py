"""Fixtures for the intake's tests: the real k8saudit behind it, and a TLS certificate for it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins"))  # the plugin harness

from falco_plugin_api import Plugin
from intake_helpers import FalcoLoop
from tls_ca import TestCa

BUILD = Path(__file__).resolve().parents[3] / "build" / "plugins"


@pytest.fixture(scope="session")
def k8saudit() -> Plugin:
    """libk8saudit.so as tools/fetch_falco_plugins.py built it; loaded once per process."""
    path = BUILD / "libk8saudit.so"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run tox, or python tools/fetch_falco_plugins.py")
    return Plugin(path)


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
