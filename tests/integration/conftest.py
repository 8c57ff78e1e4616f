"""Fixtures for tests against a real Juju controller on Kubernetes (MicroK8s or Canonical K8s).

Run with `tox -e integration` after `charmcraft pack`; CHARM_PATH may name the .charm file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import jubilant
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = "falco-k8s"
RESOURCES = {
    "falco-image": os.environ.get("FALCO_IMAGE", "falcosecurity/falco:0.44.1"),
    "forwarder-image": os.environ.get("FORWARDER_IMAGE", "ubuntu/python:3.12-24.04_stable"),
}


@pytest.fixture(scope="session")
def charm() -> Path:
    """The packed charm: CHARM_PATH, or the newest *.charm in the repository root."""
    if path := os.environ.get("CHARM_PATH"):
        return Path(path).resolve()
    packed = sorted(ROOT.glob("*.charm"), key=lambda p: p.stat().st_mtime)
    if not packed:
        pytest.fail("no packed charm: run `charmcraft pack` or set CHARM_PATH")
    return packed[-1]


@pytest.fixture(scope="module")
def juju() -> Iterator[jubilant.Juju]:
    """A temporary model, destroyed afterwards unless KEEP_MODELS is set."""
    with jubilant.temp_model(keep=bool(os.environ.get("KEEP_MODELS"))) as juju:
        juju.wait_timeout = 15 * 60
        yield juju
        if os.environ.get("CI"):
            print(juju.debug_log(limit=300))


@pytest.fixture(scope="module")
def deployed(juju: jubilant.Juju, charm: Path) -> jubilant.Juju:
    """falco-k8s deployed with the stock images and cluster trust, and active."""
    juju.deploy(charm, APP, resources=RESOURCES, trust=True)
    juju.wait(lambda s: jubilant.all_active(s, APP), error=jubilant.any_error)
    return juju
