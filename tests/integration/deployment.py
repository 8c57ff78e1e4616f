"""How the tests deploy falco-k8s and read its state from Juju and from Kubernetes.

The deploy arguments come from one place, metadata.yaml: the how-to "Deploy from source"
lines name the same images and flags (a unit test checks it), and the release workflow
uploads the same images to Charmhub.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import jubilant
import yaml
from lightkube import Client

from webhook._apiserver_side import webhook_resource_name

ROOT = Path(__file__).resolve().parents[2]
APP = "falco-k8s"
INTEGRATOR = "gelf-integrator"
WEBHOOK_OBJECTS = webhook_resource_name(APP)  # the Service, ConfigMap, Secret, NetworkPolicy
ADDRESS = re.compile(r"webhook (https://\S+/k8s-audit)")

_T = TypeVar("_T")


def oci_resources(metadata: Path = ROOT / "metadata.yaml") -> dict[str, str]:
    """The charm's OCI images as `--resource` values: the pinned upstream-source of each."""
    resources = yaml.safe_load(metadata.read_text())["resources"]
    return {
        name: resource["upstream-source"]
        for name, resource in resources.items()
        if resource["type"] == "oci-image"
    }


def packed_charm(directory: Path, name: str, env: str) -> Path:
    """The charm in ``env`` if set, else the newest ``<name>_*.charm`` packed in ``directory``."""
    if path := os.environ.get(env):
        return Path(path).resolve()
    packed = sorted(directory.glob(f"{name}_*.charm"), key=lambda p: p.stat().st_mtime)
    if not packed:
        raise FileNotFoundError(f"no {name}_*.charm in {directory}: run `charmcraft pack` there")
    return packed[-1]


def deploy(juju: jubilant.Juju, charm: Path, *, trust: bool = True, **options: str) -> None:
    """`juju deploy ./falco-k8s_*.charm --resource ... [--trust]`, as the how-to says."""
    juju.deploy(charm, APP, resources=oci_resources(), trust=trust, config=dict(options) or None)


def until(check: Callable[[], _T | None], what: str, timeout: float = 300, delay: float = 3) -> _T:
    """Poll ``check`` until it returns a value other than None or False; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)


# -- Juju status ------------------------------------------------------------------------------


def messages(status: jubilant.Status, app: str = APP) -> dict[str, str]:
    """Each unit's workload status message."""
    return {name: unit.workload_status.message for name, unit in status.apps[app].units.items()}


def in_state(
    status: jubilant.Status, current: str, text: str, app: str, units: int | None
) -> bool:
    """Every unit of ``app`` is in ``current`` with ``text`` in its message."""
    if app not in status.apps:
        return False
    found = status.apps[app].units
    return (units is None or len(found) == units) and all(
        unit.workload_status.current == current and text in unit.workload_status.message
        for unit in found.values()
    )


def wait_for(
    juju: jubilant.Juju,
    current: str,
    text: str = "",
    *,
    app: str = APP,
    units: int | None = None,
    timeout: float | None = None,
) -> jubilant.Status:
    """Wait for the status a change produces, not just any status of that kind.

    A unit that was already active looks active before `config-changed` has even run, so the
    caller names the text the change puts in the message. An error status fails at once.
    """
    return juju.wait(
        lambda status: in_state(status, current, text, app, units),
        error=jubilant.any_error,
        timeout=timeout,
    )


def loaded_rules(juju: jubilant.Juju, unit: str) -> set[str]:
    """The names of the rules Falco says it loaded (`show-rules`)."""
    return {rule["name"] for rule in json.loads(juju.run(unit, "show-rules").results["rules"])}


def webhook_addresses(status: jubilant.Status) -> dict[str, str]:
    """Each unit's webhook URL, as its status message gives it."""
    found = {unit: ADDRESS.search(message) for unit, message in messages(status).items()}
    return {unit: match.group(1) for unit, match in found.items() if match}


def leader(status: jubilant.Status, app: str = APP) -> str:
    """The name of the unit that holds leadership; "" while none does."""
    return next((name for name, unit in status.apps[app].units.items() if unit.leader), "")


def pod_name(unit: str) -> str:
    """Juju names each unit's pod after it: falco-k8s/1 runs in pod falco-k8s-1."""
    return unit.replace("/", "-")


@contextmanager
def fast_update_status(juju: jubilant.Juju) -> Iterator[None]:
    """Run update-status every 10 s for a while, as an operator waits for the next one."""
    juju.model_config({"update-status-hook-interval": "10s"})
    try:
        yield
    finally:
        juju.model_config(reset="update-status-hook-interval")


# -- Kubernetes -------------------------------------------------------------------------------


@contextmanager
def kube() -> Iterator[Client]:
    """A client on the test machine's kubeconfig (KUBECONFIG or ~/.kube/config), closed after."""
    with Client() as client:
        yield client
