"""Two units behind one webhook Service, a change of leader, and back to one unit."""

from __future__ import annotations

import jubilant
import pytest
from deployment import (
    APP,
    WEBHOOK_OBJECTS,
    kube,
    leader,
    pod_name,
    until,
    wait_for,
    webhook_addresses,
)
from lightkube.resources.core_v1 import Pod, Service

pytestmark = pytest.mark.integration


def service_address(juju: jubilant.Juju) -> str:
    namespace = juju.model
    assert namespace is not None
    with kube() as client:
        spec = client.get(Service, WEBHOOK_OBJECTS, namespace=namespace).spec
    assert spec is not None
    return f"https://{spec.clusterIP}:9765/k8s-audit"


def delete_pod(juju: jubilant.Juju, unit: str) -> None:
    namespace = juju.model
    assert namespace is not None
    with kube() as client:
        client.delete(Pod, pod_name(unit), namespace=namespace)


def test_scale_to_two_units_through_a_leader_change_and_back(deployed: jubilant.Juju):
    address = service_address(deployed)

    deployed.add_unit(APP, num_units=1)
    status = wait_for(deployed, "active", "webhook https://", units=2)
    assert set(webhook_addresses(status).values()) == {address}
    assert len(webhook_addresses(status)) == 2

    # Juju has no command to hand leadership over: take the leader's pod away until its
    # lease lapses and the other unit claims it (Juju's lease lasts about a minute).
    first = leader(status)

    def leadership_moved() -> str | None:
        current = leader(deployed.status())
        if current == first:
            delete_pod(deployed, first)
        return current if current not in ("", first) else None

    until(leadership_moved, "another unit to take leadership", timeout=900, delay=60)
    status = wait_for(deployed, "active", "webhook https://", units=2)
    # The new leader re-applied the Service: the apiserver's webhook file stays valid.
    assert set(webhook_addresses(status).values()) == {address}
    assert service_address(deployed) == address

    deployed.remove_unit(APP, num_units=1)
    status = wait_for(deployed, "active", "webhook https://", units=1)
    assert set(webhook_addresses(status).values()) == {address}
    assert service_address(deployed) == address
