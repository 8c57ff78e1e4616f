"""Fixtures for tests against a real Juju 3.6 controller on Kubernetes (MicroK8s or Canonical K8s).

Run with `tox -e integration` after `charmcraft pack` (and `charmcraft pack` in gelf-integrator/
for the GELF journey); CHARM_PATH and GELF_INTEGRATOR_CHARM_PATH may name the .charm files.
KEEP_MODELS keeps each test module's model; on a failure the model's debug log is printed and
saved with its `juju status` under build/integration/, which CI keeps as an artefact.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import jubilant
import pytest
from deployment import APP, INTEGRATOR, ROOT, deploy, packed_charm, wait_for

ARTEFACTS = ROOT / "build" / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `microk8s` rewrite the local kube-apiserver's flags: MicroK8s only."""
    if shutil.which("microk8s"):
        return
    skip = pytest.mark.skip(reason="needs MicroK8s on the test machine (it edits its apiserver)")
    for item in items:
        if item.get_closest_marker("microk8s"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def charm() -> Path:
    """The packed falco-k8s charm."""
    return packed_charm(ROOT, APP, "CHARM_PATH")


@pytest.fixture(scope="session")
def gelf_integrator_charm() -> Path:
    """The packed gelf integrator (`cd gelf-integrator && charmcraft pack`)."""
    return packed_charm(ROOT / INTEGRATOR, INTEGRATOR, "GELF_INTEGRATOR_CHARM_PATH")


def _keep_evidence(juju: jubilant.Juju) -> None:
    """Print the debug log and save it with the status where CI picks them up."""
    log = juju.debug_log(limit=1000)
    print(log, end="")
    folder = ARTEFACTS / (juju.model or "model")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "debug-log.txt").write_text(log)
    (folder / "status.txt").write_text(juju.cli("status", "--format", "yaml", "--relations"))


@pytest.fixture(scope="module")
def juju(request: pytest.FixtureRequest) -> Iterator[jubilant.Juju]:
    """A temporary model per test module, destroyed afterwards unless KEEP_MODELS is set."""
    with jubilant.temp_model(keep=bool(os.environ.get("KEEP_MODELS"))) as juju:
        juju.wait_timeout = 15 * 60
        failed_before = request.session.testsfailed
        yield juju
        if request.session.testsfailed > failed_before:
            _keep_evidence(juju)


@pytest.fixture(scope="module")
def deployed(juju: jubilant.Juju, charm: Path) -> jubilant.Juju:
    """falco-k8s deployed as docs/how-to/deploy-from-source.md says, and active."""
    deploy(juju, charm)
    wait_for(juju, "active", "webhook https://")
    return juju
