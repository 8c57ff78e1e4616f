"""falco-k8s on a real cluster: deploy, rules, outputs, the audit webhook end to end."""

from __future__ import annotations

import base64
import json

import jubilant
import pytest
import yaml
from deployment import APP, WEBHOOK_OBJECTS, kube, loaded_rules, pod_name, until, wait_for
from inside_pod import (
    DISALLOWED_USER_RULE,
    falco_file,
    forwarder_file,
    logged_alerts,
    marker_names,
    post_audit_events,
    raised_for,
    stdout_alerts,
)
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret, Service

from constants import ALERT_LOG, FALCO_CONFIG, FORWARDER_CONFIG

pytestmark = pytest.mark.integration

UNIT = f"{APP}/0"
BROKEN_RULES = (
    "- rule: Broken\n  desc: d\n  condition: ka.verbb = get\n  output: o\n"
    "  priority: INFO\n  source: k8s_audit\n"
)
MARKER_RULE = "Integration Marker Rule"
MARKER_RULES = f"""\
- rule: {MARKER_RULE}
  desc: Raised when someone reads the integration tests' marker ConfigMap.
  condition: ka.verb = get and ka.target.resource = configmaps and ka.target.name = itest-marker
  output: integration marker read (user=%ka.user.name)
  priority: INFO
  source: k8s_audit
  tags: [k8s]
"""


def test_deploys_active_with_the_stock_image(deployed: jubilant.Juju):
    status = deployed.status()
    message = status.apps[APP].units[UNIT].workload_status.message
    assert message.startswith("webhook https://")


def test_show_rules_lists_what_falco_loaded(deployed: jubilant.Juju):
    task = deployed.run(UNIT, "show-rules", {"tag": "k8s"})

    rules = json.loads(task.results["rules"])
    assert int(task.results["count"]) == len(rules) > 10
    assert any(rule["name"] == DISALLOWED_USER_RULE for rule in rules)
    # The charm's own rules file, loaded after the stock one.
    assert any(rule["name"] == "K8s Audit Event Truncated" for rule in rules)
    assert all(rule["source"] == "k8s_audit" for rule in rules)


def test_http_output_is_delivered_from_the_alert_log(deployed: jubilant.Juju):
    deployed.config(APP, {"http_output": "http://alerts.example.invalid:8080/falco"})
    wait_for(deployed, "active", "alerts to http_output")

    falco_yaml = yaml.safe_load(falco_file(deployed, UNIT, FALCO_CONFIG))
    # Falco never posts to the sink itself: it appends to its alert log, and the forwarder
    # delivers from there with retries.
    assert falco_yaml["http_output"] == {"enabled": False}
    assert falco_yaml["file_output"]["filename"] == ALERT_LOG
    assert falco_yaml["file_output"]["keep_alive"] is False
    forwarder = json.loads(forwarder_file(deployed, UNIT, FORWARDER_CONFIG))
    assert forwarder["sinks"][0]["url"] == "http://alerts.example.invalid:8080/falco"


def test_bad_http_output_blocks_and_keeps_the_running_config(deployed: jubilant.Juju):
    before = falco_file(deployed, UNIT, FALCO_CONFIG)
    sinks_before = forwarder_file(deployed, UNIT, FORWARDER_CONFIG)

    deployed.config(APP, {"http_output": "ftp://x"})
    wait_for(deployed, "blocked", "http_output: only http:// and https:// URLs are accepted")

    assert falco_file(deployed, UNIT, FALCO_CONFIG) == before
    assert forwarder_file(deployed, UNIT, FORWARDER_CONFIG) == sinks_before

    deployed.config(APP, reset="http_output")
    wait_for(deployed, "active", "webhook https://")


def test_rejected_custom_rules_keep_falco_on_the_last_good_rules(deployed: jubilant.Juju):
    deployed.config(APP, {"custom_rules": BROKEN_RULES})
    wait_for(deployed, "blocked", "custom_rules rejected by Falco:")

    assert "Broken" not in loaded_rules(deployed, UNIT)
    with pytest.raises(jubilant.TaskError):
        deployed.run(UNIT, "validate-rules")

    deployed.config(APP, reset="custom_rules")
    wait_for(deployed, "active", "webhook https://")


def test_a_new_pod_runs_the_last_good_rules_while_custom_rules_are_bad(deployed: jubilant.Juju):
    deployed.config(APP, {"custom_rules": MARKER_RULES})
    until(lambda: MARKER_RULE in loaded_rules(deployed, UNIT), "Falco to load the marker rule")
    deployed.config(APP, {"custom_rules": BROKEN_RULES})
    wait_for(deployed, "blocked", "custom_rules rejected by Falco:")
    namespace = deployed.model
    assert namespace is not None

    with kube() as client:
        old = client.get(Pod, pod_name(UNIT), namespace=namespace).metadata
        assert old is not None
        client.delete(Pod, pod_name(UNIT), namespace=namespace)

        def new_pod_ready() -> bool:
            pod = client.get(Pod, pod_name(UNIT), namespace=namespace)
            conditions = pod.status.conditions if pod.status else None
            return (
                pod.metadata is not None
                and pod.metadata.uid != old.uid
                and any(c.type == "Ready" and c.status == "True" for c in conditions or [])
            )

        until(new_pod_ready, "the unit's pod to be recreated", timeout=600)

    def rules_in_new_pod() -> set[str] | None:
        try:
            return loaded_rules(deployed, UNIT)
        except jubilant.TaskError:  # Falco is not up yet in the new pod
            return None

    rules = until(rules_in_new_pod, "Falco to run in the new pod", timeout=600)
    assert MARKER_RULE in rules
    assert "Broken" not in rules
    wait_for(deployed, "blocked", "custom_rules rejected by Falco:")

    deployed.config(APP, reset="custom_rules")
    wait_for(deployed, "active", "webhook https://")


def test_webhook_config_matches_the_live_service(deployed: jubilant.Juju):
    results = deployed.run(UNIT, "get-webhook-config").results
    namespace = deployed.model
    assert namespace is not None
    with kube() as client:
        configmap = client.get(ConfigMap, WEBHOOK_OBJECTS, namespace=namespace)
        secret = client.get(Secret, WEBHOOK_OBJECTS, namespace=namespace)
        service = client.get(Service, WEBHOOK_OBJECTS, namespace=namespace)
    assert configmap.data == {"audit-policy.yaml": results["audit-policy"]}
    assert secret.data is not None
    kept = base64.b64decode(secret.data["webhook-config.yaml"]).decode()
    assert kept == results["webhook-config"]
    assert service.spec is not None
    assert f"https://{service.spec.clusterIP}:9765/k8s-audit" in results["webhook-config"]

    kubeconfig = yaml.safe_load(results["webhook-config"])
    assert kubeconfig["users"][0]["user"]["token"]
    assert "--audit-policy-file=" in results["apiserver-flags"]


def test_a_post_without_the_token_never_reaches_falco(deployed: jubilant.Juju):
    refused = marker_names(1)
    with pytest.raises(jubilant.CLIError) as error:
        post_audit_events(deployed, UNIT, refused, token="not-the-token")
    assert "HTTP Error 401" in (error.value.stderr or "")
    accepted = marker_names(1)
    post_audit_events(deployed, UNIT, accepted)

    until(
        lambda: raised_for(logged_alerts(deployed, UNIT), accepted) == set(accepted),
        "the alert for the batch posted with the token",
        timeout=120,
    )
    assert raised_for(logged_alerts(deployed, UNIT), refused) == set()


def test_an_audit_event_posted_to_the_service_raises_an_alert(deployed: jubilant.Juju):
    names = marker_names(1)
    post_audit_events(deployed, UNIT, names)

    until(
        lambda: raised_for(logged_alerts(deployed, UNIT), names) == set(names),
        f"a '{DISALLOWED_USER_RULE}' alert in Falco's alert log",
        timeout=120,
    )
    until(
        lambda: raised_for(stdout_alerts(deployed, UNIT), names) == set(names),
        f"a '{DISALLOWED_USER_RULE}' alert on Falco's stdout",
        timeout=60,
    )
