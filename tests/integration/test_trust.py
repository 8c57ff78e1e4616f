"""The first deploy an operator may get wrong: without --trust, then `juju trust`."""

from __future__ import annotations

from pathlib import Path

import jubilant
import pytest
from deployment import APP, WEBHOOK_OBJECTS, deploy, fast_update_status, kube, wait_for
from inside_pod import pebble
from lightkube.resources.core_v1 import Service

from constants import FALCO_CONTAINER, FALCO_SERVICE

pytestmark = pytest.mark.integration

UNIT = f"{APP}/0"
TRUST_HINT = f"run: juju trust {APP} --scope=cluster"


def test_without_trust_blocks_with_the_hint_and_recovers_once_trusted(
    juju: jubilant.Juju, charm: Path
):
    deploy(juju, charm, trust=False)
    wait_for(juju, "blocked", TRUST_HINT)
    # Falco runs meanwhile; only the cluster side waits for the trust.
    services = pebble(juju, UNIT, FALCO_CONTAINER, "services", FALCO_SERVICE)
    assert services.splitlines()[1].split()[:3] == [FALCO_SERVICE, "enabled", "active"]

    # `juju trust` runs config-changed; update-status would recover the unit as well.
    with fast_update_status(juju):
        juju.trust(APP, scope="cluster")
        status = wait_for(juju, "active", "webhook https://")

    namespace = juju.model
    assert namespace is not None
    with kube() as client:
        service = client.get(Service, WEBHOOK_OBJECTS, namespace=namespace)
    assert service.spec is not None
    message = status.apps[APP].units[UNIT].workload_status.message
    assert f"https://{service.spec.clusterIP}:9765/k8s-audit" in message
