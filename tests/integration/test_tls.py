"""The audit webhook over TLS on a real cluster, with self-signed-certificates as provider."""

from __future__ import annotations

import base64
import json

import jubilant
import pytest
import yaml
from deployment import APP, until
from inside_pod import (
    DISALLOWED_USER_RULE,
    audit_batch,
    charm_shell,
    falco_file,
    logged_alerts,
    marker_names,
    raised_for,
)

from constants import FALCO_CONTAINER, WEBHOOK_CONFIG_FILE, WEBHOOK_PEM

pytestmark = pytest.mark.integration

UNIT = f"{APP}/0"
PROVIDER = "self-signed-certificates"

# From the charm container (it has python3): POST one batch, trusting only the given CA.
POST = (
    "import ssl, sys, urllib.request\n"
    "context = ssl.create_default_context(cadata=sys.argv[3]) if sys.argv[3] else None\n"
    "request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(),"
    " headers={'Content-Type': 'application/json'})\n"
    "urllib.request.urlopen(request, timeout=10, context=context)\n"
)


@pytest.fixture(scope="module")
def with_tls(deployed: jubilant.Juju) -> jubilant.Juju:
    deployed.deploy(PROVIDER, channel="1/stable")
    deployed.integrate(APP, PROVIDER)
    # The apiserver's http file is outdated now: the charm asks for the new one.
    deployed.wait(
        lambda s: "get-webhook-config" in s.apps[APP].units[UNIT].workload_status.message,
        error=jubilant.any_error,
    )
    return deployed


def _webhook_cluster(juju: jubilant.Juju) -> tuple[str, dict[str, str]]:
    """The webhook file `get-webhook-config` hands out, and its cluster entry."""
    text = juju.run(UNIT, "get-webhook-config").results["webhook-config"]
    return text, yaml.safe_load(text)["clusters"][0]["cluster"]


def _post(juju: jubilant.Juju, server: str, ca: str, names: list[str]) -> None:
    """Post one audit batch for ``names`` to ``server``, verifying it against ``ca`` only."""
    charm_shell(juju, UNIT, ["python3", "-c", POST, server, json.dumps(audit_batch(names)), ca])


def test_webhook_serves_https_with_the_providers_ca(with_tls: jubilant.Juju):
    webhook_config, cluster = _webhook_cluster(with_tls)
    assert cluster["server"].startswith("https://")
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    assert falco_file(with_tls, UNIT, WEBHOOK_CONFIG_FILE) == webhook_config
    mode = with_tls.ssh(UNIT, f"stat -c %a {WEBHOOK_PEM}", container=FALCO_CONTAINER)
    assert mode.strip() == "600"
    # Having handed out the current file, the charm is active again.
    with_tls.wait(lambda s: jubilant.all_active(s, APP), error=jubilant.any_error)

    names = marker_names(1)
    _post(with_tls, cluster["server"], ca, names)

    until(
        lambda: raised_for(logged_alerts(with_tls, UNIT), names) == set(names),
        f"a '{DISALLOWED_USER_RULE}' alert for the audit event posted over https",
        timeout=60,
        delay=2,
    )


def test_plain_http_is_refused(with_tls: jubilant.Juju):
    _, cluster = _webhook_cluster(with_tls)

    with pytest.raises(jubilant.CLIError):
        _post(with_tls, cluster["server"].replace("https://", "http://"), "", marker_names(1))


def test_removing_the_relation_goes_back_to_http(with_tls: jubilant.Juju):
    with_tls.remove_relation(APP, PROVIDER)
    with_tls.wait(
        lambda s: "TLS was removed" in s.apps[APP].units[UNIT].workload_status.message,
        error=jubilant.any_error,
    )
    _, cluster = _webhook_cluster(with_tls)
    assert cluster["server"].startswith("http://")
    assert "certificate-authority-data" not in cluster
