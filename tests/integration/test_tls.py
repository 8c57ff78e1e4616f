"""The audit webhook over TLS on a real cluster, with self-signed-certificates as provider."""

from __future__ import annotations

import base64
import json
import shlex
import time

import jubilant
import pytest
import yaml
from conftest import APP
from test_charm import AUDIT_BATCH, alert_rules, falco_file

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


def _post(juju: jubilant.Juju, server: str, ca: str) -> None:
    juju.ssh(UNIT, shlex.join(["python3", "-c", POST, server, json.dumps(AUDIT_BATCH), ca]))


def test_webhook_serves_https_with_the_providers_ca(with_tls: jubilant.Juju):
    results = with_tls.run(UNIT, "get-webhook-config").results
    cluster = yaml.safe_load(results["webhook-config"])["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://")
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    assert falco_file(with_tls, "/etc/falco/webhook-config.yaml") == results["webhook-config"]
    mode = with_tls.ssh(UNIT, "stat -c %a /etc/falco/k8saudit-webhook.pem", container="falco")
    assert mode.strip() == "600"
    # Having handed out the current file, the charm is active again.
    with_tls.wait(lambda s: jubilant.all_active(s, APP), error=jubilant.any_error)

    _post(with_tls, cluster["server"], ca)

    deadline = time.monotonic() + 60
    while "Disallowed K8s User" not in alert_rules(
        falco_file(with_tls, "/var/log/falco.log").splitlines()
    ):
        if time.monotonic() > deadline:
            pytest.fail("no alert for the audit event posted over https")
        time.sleep(2)


def test_plain_http_is_refused(with_tls: jubilant.Juju):
    results = with_tls.run(UNIT, "get-webhook-config").results
    server = yaml.safe_load(results["webhook-config"])["clusters"][0]["cluster"]["server"]

    with pytest.raises(jubilant.CLIError):
        _post(with_tls, server.replace("https://", "http://"), "")


def test_removing_the_relation_goes_back_to_http(with_tls: jubilant.Juju):
    with_tls.remove_relation(APP, PROVIDER)
    with_tls.wait(
        lambda s: "TLS was removed" in s.apps[APP].units[UNIT].workload_status.message,
        error=jubilant.any_error,
    )
    results = with_tls.run(UNIT, "get-webhook-config").results
    cluster = yaml.safe_load(results["webhook-config"])["clusters"][0]["cluster"]
    assert cluster["server"].startswith("http://")
    assert "certificate-authority-data" not in cluster
