"""falco-k8s on a real cluster: deploy, rules, outputs, the audit webhook end to end."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterable

import jubilant
import pytest
import yaml
from conftest import APP
from lightkube import Client
from lightkube.resources.core_v1 import ConfigMap, Service

pytestmark = pytest.mark.integration

UNIT = f"{APP}/0"

# A recorded kube-apiserver audit batch: a user outside the allowed list reads a Secret.
AUDIT_BATCH = {
    "kind": "EventList",
    "apiVersion": "audit.k8s.io/v1",
    "items": [
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": "4f4bbd2b-5c1f-4f25-8d1c-1f3bd8a4e1a1",
            "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/secrets/db-password",
            "verb": "get",
            "user": {"username": "mallory", "groups": ["system:authenticated"]},
            "sourceIPs": ["10.1.2.3"],
            "userAgent": "kubectl/v1.31.0",
            "objectRef": {
                "resource": "secrets",
                "namespace": "default",
                "name": "db-password",
                "apiVersion": "v1",
            },
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2026-11-27T05:07:26.000000Z",
            "stageTimestamp": "2026-11-27T05:07:26.010000Z",
        }
    ],
}


def falco_file(juju: jubilant.Juju, path: str) -> str:
    return juju.ssh(UNIT, f"cat {path}", container="falco")


def alert_rules(lines: Iterable[str]) -> list[str]:
    """The rule of every JSON alert among Falco's output lines."""
    return [json.loads(line)["rule"] for line in lines if line.startswith("{")]


def test_deploys_active_with_the_stock_image(deployed: jubilant.Juju):
    status = deployed.status()
    message = status.apps[APP].units[UNIT].workload_status.message
    assert message.startswith("audit webhook at http://")


def test_show_rules_lists_what_falco_loaded(deployed: jubilant.Juju):
    task = deployed.run(UNIT, "show-rules", {"tag": "k8s"})

    rules = json.loads(task.results["rules"])
    assert int(task.results["count"]) == len(rules) > 10
    assert any(rule["name"] == "Disallowed K8s User" for rule in rules)
    assert all(rule["source"] == "k8s_audit" for rule in rules)


def test_http_output_is_delivered_from_the_alert_log(deployed: jubilant.Juju):
    deployed.config(APP, {"http_output": "http://alerts.example.invalid:8080/falco"})
    deployed.wait(lambda s: jubilant.all_active(s, APP), error=jubilant.any_error)

    falco_yaml = yaml.safe_load(falco_file(deployed, "/etc/falco/falco.yaml"))
    assert falco_yaml["http_output"] == {"enabled": False}
    assert falco_yaml["file_output"]["filename"] == "/var/lib/falco-alerts/log/falco.log"
    assert falco_yaml["file_output"]["keep_alive"] is False
    # The chiselled Python image has no cat, only python3.
    read = "python3 -c 'import sys; sys.stdout.write(open(sys.argv[1]).read())'"
    forwarder = json.loads(
        deployed.ssh(UNIT, f"{read} /etc/falco-forwarder/config.json", container="forwarder")
    )
    assert forwarder["sinks"][0]["url"] == "http://alerts.example.invalid:8080/falco"


def test_bad_http_output_blocks_and_keeps_the_running_config(deployed: jubilant.Juju):
    before = falco_file(deployed, "/etc/falco/falco.yaml")

    deployed.config(APP, {"http_output": "ftp://x"})
    deployed.wait(lambda s: jubilant.all_blocked(s, APP))

    message = deployed.status().apps[APP].units[UNIT].workload_status.message
    assert "http_output: only http:// and https:// URLs are accepted" in message
    assert falco_file(deployed, "/etc/falco/falco.yaml") == before

    deployed.config(APP, reset="http_output")
    deployed.wait(lambda s: jubilant.all_active(s, APP), error=jubilant.any_error)


def test_rejected_custom_rules_keep_falco_on_the_last_good_rules(deployed: jubilant.Juju):
    bad = (
        "- rule: Broken\n  desc: d\n  condition: ka.verbb = get\n  output: o\n"
        "  priority: INFO\n  source: k8s_audit\n"
    )
    deployed.config(APP, {"custom_rules": bad})
    deployed.wait(lambda s: jubilant.all_blocked(s, APP))

    message = deployed.status().apps[APP].units[UNIT].workload_status.message
    assert message.startswith("custom_rules rejected by Falco:")
    loaded = json.loads(deployed.run(UNIT, "show-rules").results["rules"])
    assert "Broken" not in {rule["name"] for rule in loaded}
    with pytest.raises(jubilant.TaskError):
        deployed.run(UNIT, "validate-rules")

    deployed.config(APP, reset="custom_rules")
    deployed.wait(lambda s: jubilant.all_active(s, APP), error=jubilant.any_error)


def test_webhook_config_matches_the_live_service(deployed: jubilant.Juju):
    results = deployed.run(UNIT, "get-webhook-config").results
    client = Client()  # the test machine's kubeconfig
    namespace = deployed.model
    assert namespace is not None
    configmap = client.get(ConfigMap, f"{APP}-audit-webhook", namespace=namespace)
    service = client.get(Service, f"{APP}-audit-webhook", namespace=namespace)
    assert configmap.data is not None
    assert configmap.data["webhook-config.yaml"] == results["webhook-config"]
    assert configmap.data["audit-policy.yaml"] == results["audit-policy"]
    assert service.spec is not None
    assert f"http://{service.spec.clusterIP}:9765/k8s-audit" in results["webhook-config"]

    kubeconfig = yaml.safe_load(results["webhook-config"])
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    assert server.startswith("http://")
    assert server.endswith(":9765/k8s-audit")
    assert falco_file(deployed, "/etc/falco/webhook-config.yaml") == results["webhook-config"]
    assert "--audit-policy-file=" in results["apiserver-flags"]


def test_an_audit_event_posted_to_the_service_raises_an_alert(deployed: jubilant.Juju):
    results = deployed.run(UNIT, "get-webhook-config").results
    server = yaml.safe_load(results["webhook-config"])["clusters"][0]["cluster"]["server"]
    # From the charm container (it has python3; the Falco image need not have curl), to the
    # Service address the apiserver is told to use.
    post = (
        "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request("
        "sys.argv[1], data=sys.argv[2].encode(), headers={'Content-Type': 'application/json'}"
        "), timeout=10)"
    )
    deployed.ssh(UNIT, shlex.join(["python3", "-c", post, server, json.dumps(AUDIT_BATCH)]))

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = falco_file(deployed, "/var/lib/falco-alerts/log/falco.log")
        in_file = alert_rules(log.splitlines())
        # Falco's stdout, where `kubectl logs -c falco` and Pebble's log show it to operators;
        # Pebble prefixes each line with "<time> [falco] ".
        stdout = deployed.ssh(UNIT, "/charm/bin/pebble logs falco -n 200", container="falco")
        in_stdout = alert_rules(line.partition("] ")[2] for line in stdout.splitlines())
        if "Disallowed K8s User" in in_file and "Disallowed K8s User" in in_stdout:
            break
        time.sleep(2)
    else:
        pytest.fail("Falco raised no 'Disallowed K8s User' alert for the posted audit event")
