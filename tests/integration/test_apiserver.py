"""The README's first alert on MicroK8s, and the real apiserver's webhook backend feeding Falco.

The README's five MicroK8s commands run here as written, in the test's model: the deploy is
the `deployed` fixture's (the packed charm, with the README's --trust), the other four run
through bash as the operator's terminal would. A second test creates a privileged pod and
finds Falco's alert at an in-pod receiver. The apiserver's flags are restored afterwards. On
other clouds the same path is covered by posting a recorded batch to the Service
(test_charm.py).
"""

from __future__ import annotations

import grp
import os
import shlex
import subprocess
from collections.abc import Iterator

import jubilant
import pytest
from deployment import APP, kube, until, wait_for
from inside_pod import InPodReceiver
from lightkube.models.core_v1 import Container, PodSpec, SecurityContext
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod
from readme import MICROK8S, first_alert

from webhook._apiserver_side import MICROK8S_APISERVER_ARGS, MICROK8S_RESTART

pytestmark = [pytest.mark.integration, pytest.mark.microk8s]

UNIT = f"{APP}/0"
PRIVILEGED_POD_RULE = "Create Privileged Pod"
# Undoes what the script adds; the same line the script itself starts with.
REMOVE_AUDIT_FLAGS = f"sudo sed -i '/^--audit-\\(webhook\\|policy\\)-/d' {MICROK8S_APISERVER_ARGS}"
DEPLOY, WAIT, WIRE, TRIGGER, READ = first_alert(MICROK8S)
TRIGGERED_POD = "privtest"


def shell(script: str) -> None:
    """Run as root: CI's user is not yet in the microk8s group when the script runs."""
    subprocess.run(["sudo", "bash", "-euo", "pipefail", "-c", script], check=True)


def as_operator(line: str, juju: jubilant.Juju) -> subprocess.CompletedProcess[str]:
    """One README line through bash, in the test's model, with the operator's microk8s group.

    CI adds its user to the microk8s group without a new login, so `sg` brings the group in.
    """
    argv = ["bash", "-o", "pipefail", "-c", line]
    if "microk8s" not in {grp.getgrgid(gid).gr_name for gid in os.getgroups()}:
        argv = ["sg", "microk8s", "-c", shlex.join(argv)]
    env = {**os.environ, "JUJU_MODEL": juju.model or ""}
    return subprocess.run(argv, env=env, text=True, capture_output=True, check=False)


def api_answers() -> bool:
    try:
        with kube() as client:
            client.get(Namespace, "default")
    except Exception:  # anything means "not back yet" while it restarts
        return False
    return True


@pytest.fixture(scope="module")
def audited(deployed: jubilant.Juju) -> Iterator[jubilant.Juju]:
    """The README's commands 2 and 3: the local apiserver now sends its audit events to Falco."""
    assert DEPLOY == "juju deploy falco-k8s --channel=latest/edge --trust"  # the fixture's
    for line in (WAIT, WIRE):
        done = as_operator(line, deployed)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
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


def test_the_readme_first_alert_commands_show_the_alert(audited: jubilant.Juju):
    triggered = as_operator(TRIGGER, audited)
    assert triggered.returncode == 0, triggered.stderr

    def alert_read_back() -> str | None:
        done = as_operator(READ, audited)
        return done.stdout if done.returncode == 0 and TRIGGERED_POD in done.stdout else None

    try:
        found = until(
            alert_read_back,
            f"the README's last command to find the '{PRIVILEGED_POD_RULE}' alert",
            timeout=300,
            delay=10,
        )
    finally:
        with kube() as client:
            client.delete(Pod, TRIGGERED_POD, namespace="default")
    assert PRIVILEGED_POD_RULE in found


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
