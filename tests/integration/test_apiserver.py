"""The real kube-apiserver's audit webhook backend feeds Falco (MicroK8s on the test machine).

The test applies the `microk8s` script `get-webhook-config` hands the operator, as the README
tells them to, then creates a privileged pod and finds Falco's alert at an in-pod receiver.
It restores the apiserver's flags afterwards. On other clouds the same path is covered by
posting a recorded batch to the Service (test_charm.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import jubilant
import pytest
from deployment import APP, kube, until, wait_for
from inside_pod import InPodReceiver
from lightkube.models.core_v1 import Container, PodSpec, SecurityContext
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod

from webhook._apiserver_side import MICROK8S_APISERVER_ARGS, MICROK8S_RESTART

pytestmark = [pytest.mark.integration, pytest.mark.microk8s]

UNIT = f"{APP}/0"
PRIVILEGED_POD_RULE = "Create Privileged Pod"
# Undoes what the script adds; the same line the script itself starts with.
REMOVE_AUDIT_FLAGS = f"sudo sed -i '/^--audit-\\(webhook\\|policy\\)-/d' {MICROK8S_APISERVER_ARGS}"


def shell(script: str) -> None:
    """Run as root: CI's user is not yet in the microk8s group when the script runs."""
    subprocess.run(["sudo", "bash", "-euo", "pipefail", "-c", script], check=True)


def api_answers() -> bool:
    try:
        with kube() as client:
            client.get(Namespace, "default")
    except Exception:  # anything means "not back yet" while it restarts
        return False
    return True


@pytest.fixture
def audited(deployed: jubilant.Juju) -> Iterator[jubilant.Juju]:
    """The local apiserver sends its audit events to falco-k8s, for the test's duration."""
    script = deployed.run(UNIT, "get-webhook-config").results["microk8s"]
    shell(script)
    try:
        until(api_answers, "the kube-apiserver to come back", timeout=600, delay=5)
        yield deployed
    finally:
        shell(f"{REMOVE_AUDIT_FLAGS}\n{MICROK8S_RESTART}")
        until(api_answers, "the kube-apiserver to come back", timeout=600, delay=5)


def privileged_pod(name: str) -> Pod:
    container = Container(
        name="sleep",
        image="busybox:1.36",
        command=["sleep", "3600"],
        securityContext=SecurityContext(privileged=True),
    )
    return Pod(metadata=ObjectMeta(name=name), spec=PodSpec(containers=[container]))


def test_a_privileged_pod_raises_an_alert_through_the_apiserver(audited: jubilant.Juju):
    receiver = InPodReceiver(audited, UNIT)
    receiver.start()
    audited.config(APP, {"http_output": receiver.url("/falco")})
    wait_for(audited, "active", "alerts to http_output")
    namespace = audited.model
    assert namespace is not None
    name = "itest-privileged"

    with kube() as client:
        client.create(privileged_pod(name), namespace=namespace)
        try:
            until(
                lambda: any(
                    PRIVILEGED_POD_RULE in body and name in body
                    for body in receiver.bodies("/falco")
                ),
                f"a '{PRIVILEGED_POD_RULE}' alert at the receiver",
                timeout=300,
            )
        finally:
            client.delete(Pod, name, namespace=namespace)
    audited.config(APP, reset="http_output")
