"""Pebble log targets for the logging relation: pure plan arithmetic, no Pebble needed."""

from cos._log_forwarding import log_targets, target_changes

LABELS = {"juju_application": "falco-k8s", "juju_unit": "falco-k8s/0"}
LOKI_0 = "http://loki-0:3100/loki/api/v1/push"
LOKI_1 = "http://loki-1:3100/loki/api/v1/push"


def plan_view(targets: dict) -> dict:
    """Targets as Pebble's plan shows them (without ``override``)."""
    return {name: {k: v for k, v in t.items() if k != "override"} for name, t in targets.items()}


def test_a_new_loki_unit_gets_a_target_for_all_services():
    changes = target_changes({}, {"loki/0": LOKI_0}, LABELS)
    assert changes == {
        "loki-loki-0": {
            "override": "replace",
            "type": "loki",
            "location": LOKI_0,
            "services": ["all"],
            "labels": LABELS,
        }
    }


def test_an_unchanged_plan_needs_no_change():
    current = plan_view(log_targets({"loki/0": LOKI_0}, LABELS))
    assert target_changes(current, {"loki/0": LOKI_0}, LABELS) == {}


def test_a_departed_loki_unit_is_switched_off_once():
    current = plan_view(log_targets({"loki/0": LOKI_0, "loki/1": LOKI_1}, LABELS))
    changes = target_changes(current, {"loki/1": LOKI_1}, LABELS)
    assert list(changes) == ["loki-loki-0"]
    assert changes["loki-loki-0"]["services"] == ["-all"]
    current.update(plan_view(changes))
    assert target_changes(current, {"loki/1": LOKI_1}, LABELS) == {}


def test_targets_the_charm_did_not_make_are_left_alone():
    current = {"operator-own": {"type": "loki", "location": LOKI_0, "services": ["all"]}}
    assert target_changes(current, {}, LABELS) == {}
