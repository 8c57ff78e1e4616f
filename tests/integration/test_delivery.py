"""Alerts reach the sinks operators configure, once each, across outages and a refresh.

The sink is `alert_receiver.py`, run inside the unit's pod on its loopback: the test needs
nothing reachable from the cluster, and the forwarder's real HTTP client does the delivery.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import jubilant
import pytest
from deployment import APP, INTEGRATOR, loaded_rules, oci_resources, until, wait_for
from inside_pod import (
    DISALLOWED_USER_RULE,
    InPodReceiver,
    backlogs,
    logged_alerts,
    marker_names,
    post_audit_events,
    raised_for,
)

pytestmark = pytest.mark.integration

UNIT = f"{APP}/0"
HTTP_PATH = "/falco"
GELF_PATH = "/gelf"
CLUSTER = "itest-east"


@pytest.fixture(scope="module")
def receiver(deployed: jubilant.Juju) -> Iterator[InPodReceiver]:
    """The in-pod receiver, running, with http_output pointing at it."""
    receiver = InPodReceiver(deployed, UNIT)
    receiver.start()
    deployed.config(APP, {"http_output": receiver.url(HTTP_PATH)})
    wait_for(deployed, "active", "alerts to http_output")
    yield receiver
    deployed.config(APP, reset="http_output")


def delivered_once(receiver: InPodReceiver, names: list[str]) -> dict[str, int]:
    """Wait until every alert arrived and the forwarder's queue is empty; the counts then."""
    juju = receiver.juju
    until(
        lambda: min(receiver.counts(HTTP_PATH, names).values()) >= 1,
        "every alert at the receiver",
        timeout=600,
    )
    until(lambda: backlogs(juju, UNIT).get("http_output") == 0, "an empty backlog")
    return receiver.counts(HTTP_PATH, names)


def raised_while_down(receiver: InPodReceiver, count: int) -> list[str]:
    """Stop the receiver and raise ``count`` alerts; none has arrived when this returns."""
    juju = receiver.juju
    receiver.stop()
    names = marker_names(count)
    post_audit_events(juju, UNIT, names)
    until(
        lambda: raised_for(logged_alerts(juju, UNIT), names) == set(names),
        "Falco to raise every alert",
        timeout=120,
    )
    assert receiver.counts(HTTP_PATH, names) == dict.fromkeys(names, 0)
    return names


def test_http_output_delivers_falco_json_to_the_receiver(receiver: InPodReceiver):
    names = marker_names(3)
    post_audit_events(receiver.juju, UNIT, names)

    assert delivered_once(receiver, names) == dict.fromkeys(names, 1)
    alert = json.loads(receiver.bodies(HTTP_PATH)[-1])
    assert {"time", "rule", "priority", "output", "output_fields"} <= alert.keys()
    assert alert["source"] == "k8s_audit"


def test_the_gelf_integrator_delivers_gelf_to_its_receiver(
    receiver: InPodReceiver, gelf_integrator_charm: Path
):
    juju = receiver.juju
    juju.deploy(gelf_integrator_charm, INTEGRATOR, config={"gelf_url": receiver.url(GELF_PATH)})
    juju.integrate(f"{APP}:graylog", f"{INTEGRATOR}:gelf")
    wait_for(juju, "active", app=INTEGRATOR)
    wait_for(juju, "active", "graylog")

    names = marker_names(1)
    post_audit_events(juju, UNIT, names)
    until(
        lambda: receiver.counts(GELF_PATH, names) == dict.fromkeys(names, 1),
        "the alert at the GELF receiver",
        timeout=300,
    )
    message = json.loads(
        next(b for b in receiver.bodies(GELF_PATH) if names[0] in b and DISALLOWED_USER_RULE in b)
    )
    assert message["version"] == "1.1"
    assert message["_falco_rule"] == DISALLOWED_USER_RULE
    assert message["_juju_unit"] == UNIT
    assert message["_juju_model"] == juju.model

    juju.remove_relation(f"{APP}:graylog", f"{INTEGRATOR}:gelf")
    juju.remove_application(INTEGRATOR)
    juju.wait(lambda status: INTEGRATOR not in status.apps, error=jubilant.any_error)


def test_alerts_raised_while_the_receiver_is_down_arrive_once(receiver: InPodReceiver):
    names = raised_while_down(receiver, 5)

    receiver.start()

    assert delivered_once(receiver, names) == dict.fromkeys(names, 1)


def test_cluster_name_is_on_the_alerts_real_falco_writes(receiver: InPodReceiver):
    """Falco's own append_output puts the name in output_fields: the stand-in cannot prove it."""
    juju = receiver.juju
    juju.config(APP, {"cluster_name": CLUSTER})
    wait_for(juju, "active", "alerts to http_output")

    def fields_of_a_new_alert() -> dict[str, object] | None:
        names = marker_names(1)
        post_audit_events(juju, UNIT, names)
        until(lambda: receiver.counts(HTTP_PATH, names)[names[0]] >= 1, "the alert", timeout=120)
        body = next(b for b in receiver.bodies(HTTP_PATH) if names[0] in b)
        fields = json.loads(body)["output_fields"]
        return fields if fields.get("cluster") == CLUSTER else None  # before the hot reload

    fields = until(fields_of_a_new_alert, "an alert that names the cluster", timeout=300)
    assert fields["cluster"] == CLUSTER
    juju.config(APP, reset="cluster_name")


def test_repeats_in_the_window_arrive_as_the_first_and_one_summary(receiver: InPodReceiver):
    juju = receiver.juju
    juju.config(APP, {"alert_dedup_window": 60})
    wait_for(juju, "active", "alerts to http_output")
    names = marker_names(1)

    post_audit_events(juju, UNIT, names * 5)  # five events the same but for their audit IDs

    # The events' own times are long past, so the window closes on the forwarder's clock.
    until(lambda: receiver.counts(HTTP_PATH, names)[names[0]] == 2, "the summary", timeout=300)
    until(lambda: backlogs(juju, UNIT).get("http_output") == 0, "an empty backlog")
    alerts = [
        json.loads(b)
        for b in receiver.bodies(HTTP_PATH)
        if names[0] in b and DISALLOWED_USER_RULE in b
    ]
    assert len(alerts) == 2
    assert "falco.repeats" not in alerts[0]["output_fields"]
    assert alerts[1]["output_fields"]["falco.repeats"] == 4
    assert alerts[1]["rule"] == alerts[0]["rule"] == DISALLOWED_USER_RULE
    assert len(logged_alerts_for(juju, names[0])) == 5  # Falco's alert log keeps every one
    juju.config(APP, reset="alert_dedup_window")


def logged_alerts_for(juju: jubilant.Juju, name: str) -> list[Mapping[str, object]]:
    """The 'Disallowed K8s User' alerts for marker ``name`` in Falco's own alert log."""
    return [
        a
        for a in logged_alerts(juju, UNIT)
        if a.get("rule") == DISALLOWED_USER_RULE and name in str(a.get("output", ""))
    ]


def test_refresh_keeps_the_rules_and_the_queue(receiver: InPodReceiver, charm: Path):
    juju = receiver.juju
    rule = "Refresh Marker Rule"
    juju.config(
        APP,
        {
            "custom_rules": (
                f"- rule: {rule}\n  desc: d\n  condition: ka.verb = deletecollection\n"
                "  output: o (user=%ka.user.name)\n  priority: INFO\n  source: k8s_audit\n"
            )
        },
    )
    until(lambda: rule in loaded_rules(juju, UNIT), "Falco to load the custom rule")
    names = raised_while_down(receiver, 3)
    revision = juju.status().apps[APP].charm_rev

    juju.refresh(APP, path=charm, resources=oci_resources())
    juju.wait(
        lambda status: (
            status.apps[APP].charm_rev != revision
            and status.apps[APP].units[UNIT].workload_status.current == "active"
            and "alerts to http_output" in status.apps[APP].units[UNIT].workload_status.message
        ),
        error=jubilant.any_error,
    )

    assert rule in loaded_rules(juju, UNIT)
    receiver.start()  # the refresh replaced the pod, and with it the receiver's service
    assert delivered_once(receiver, names) == dict.fromkeys(names, 1)
    juju.config(APP, reset="custom_rules")
