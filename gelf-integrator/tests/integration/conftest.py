"""Fixtures for the integrator alone against a real Juju controller (any cloud: no workload).

Run with `tox -e integration -- gelf-integrator/tests/integration` after
`cd gelf-integrator && charmcraft pack`; INTEGRATOR_CHARM_PATH may name the .charm file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import jubilant
import pytest

HERE = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def integrator_charm() -> Path:
    """The packed integrator: INTEGRATOR_CHARM_PATH, or the newest gelf-integrator*.charm."""
    if path := os.environ.get("INTEGRATOR_CHARM_PATH"):
        return Path(path).resolve()
    packed = sorted(HERE.glob("gelf-integrator*.charm"), key=lambda p: p.stat().st_mtime)
    if not packed:
        pytest.fail("no packed charm: run `charmcraft pack` in gelf-integrator/")
    return packed[-1]


@pytest.fixture(scope="module")
def juju() -> Iterator[jubilant.Juju]:
    """A temporary model, destroyed afterwards unless KEEP_MODELS is set."""
    with jubilant.temp_model(keep=bool(os.environ.get("KEEP_MODELS"))) as juju:
        juju.wait_timeout = 10 * 60
        yield juju
