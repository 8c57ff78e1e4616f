"""The audit webhook over TLS on a real cluster, with self-signed-certificates as provider.

TLS terminates at the audit intake in the forwarder container; without a provider it serves a
certificate from the charm's own CA.
"""

from __future__ import annotations

import base64

import jubilant
import pytest
import yaml
from deployment import APP, until
from inside_pod import (
    DISALLOWED_USER_RULE,
    charm_shell,
    logged_alerts,
    marker_names,
    post_audit_events,
    raised_for,
    workload_exec,
)

from constants import FORWARDER_CONTAINER, INTAKE_PEM

pytestmark = pytest.mark.integration

UNIT = f"{APP}/0"
PROVIDER = "self-signed-certificates"
_MODE = "import os, sys; print(format(os.stat(sys.argv[1]).st_mode & 0o777, 'o'))"
_PLAIN_POST = (
    "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1],"
    " data=b'{}', headers={'Content-Type': 'application/json'}), timeout=10)"
)


@pytest.fixture(scope="module")
def with_tls(deployed: jubilant.Juju) -> jubilant.Juju:
    deployed.deploy(PROVIDER, channel="1/stable")
    deployed.integrate(APP, PROVIDER)
    # The apiserver's file pins the charm's own CA: the charm asks for the new one.
    deployed.wait(
        lambda s: "get-webhook-config" in s.apps[APP].units[UNIT].workload_status.message,
        error=jubilant.any_error,
    )
    return deployed


def _webhook_cluster(juju: jubilant.Juju) -> dict[str, str]:
    """The cluster entry of the webhook file `get-webhook-config` hands out."""
    text = juju.run(UNIT, "get-webhook-config").results["webhook-config"]
    return yaml.safe_load(text)["clusters"][0]["cluster"]


def test_the_intake_serves_the_providers_certificate(with_tls: jubilant.Juju):
    cluster = _webhook_cluster(with_tls)
    assert cluster["server"].startswith("https://")
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    assert "BEGIN CERTIFICATE" in ca
    # The forwarder image has python3 and no coreutils.
    mode = workload_exec(with_tls, UNIT, FORWARDER_CONTAINER, ["python3", "-c", _MODE, INTAKE_PEM])
    assert mode.strip() == "600"
    # Having handed out the current file, the charm is active again.
    with_tls.wait(lambda s: jubilant.all_active(s, APP), error=jubilant.any_error)

    names = marker_names(1)
    post_audit_events(with_tls, UNIT, names)

    until(
        lambda: raised_for(logged_alerts(with_tls, UNIT), names) == set(names),
        f"a '{DISALLOWED_USER_RULE}' alert for the audit event posted over https",
        timeout=60,
        delay=2,
    )


def test_plain_http_is_refused(with_tls: jubilant.Juju):
    server = _webhook_cluster(with_tls)["server"].replace("https://", "http://")

    with pytest.raises(jubilant.CLIError):
        charm_shell(with_tls, UNIT, ["python3", "-c", _PLAIN_POST, server])


def test_removing_the_relation_goes_back_to_the_charms_own_ca(with_tls: jubilant.Juju):
    before = _webhook_cluster(with_tls)["certificate-authority-data"]
    with_tls.remove_relation(APP, PROVIDER)
    with_tls.wait(
        lambda s: "the TLS CA changed" in s.apps[APP].units[UNIT].workload_status.message,
        error=jubilant.any_error,
    )
    cluster = _webhook_cluster(with_tls)
    assert cluster["server"].startswith("https://")
    assert cluster["certificate-authority-data"] != before
