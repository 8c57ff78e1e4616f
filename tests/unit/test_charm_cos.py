"""COS relations in Scenario: each databag checked against its interface schema.

The schemas are pydantic models rebuilt here from the published specifications:
charm-relation-interfaces ``interfaces/prometheus_scrape/v0/schema.py``; for the interfaces it
does not publish, the data format the owning library documents (grafana-k8s
``grafana_dashboard`` v0, loki-k8s ``loki_push_api`` v1, charmlibs ``interfaces.otlp``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import ops
import pytest
from charm_pod import falco_container, peers, pod, with_container
from cosl import LZMABase64
from ops import testing
from pydantic import BaseModel, ConfigDict, Field, Json

ROOT = Path(__file__).resolve().parents[2]
LOKI_URL = "http://loki-0.loki-endpoints.cos.svc.cluster.local:3100/loki/api/v1/push"
OTLP_URL = "http://otelcol-0.otelcol-endpoints.cos.svc.cluster.local:4318"


# -- schemas (test fixtures) -------------------------------------------------------------------


class Topology(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model: str
    model_uuid: str
    application: str
    unit: str


class Rule(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    alert: str
    expr: str
    for_: str = Field(alias="for")
    labels: dict[str, str]
    annotations: dict[str, str]


class RuleGroup(BaseModel):
    name: str
    rules: list[Rule]


class Rules(BaseModel):
    groups: list[RuleGroup]


class StaticConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    targets: list[str]
    labels: dict[str, str] | None = None


class ScrapeJob(BaseModel):
    model_config = ConfigDict(extra="allow")
    job_name: str | None = None
    metrics_path: str | None = None
    static_configs: list[StaticConfig]


class ScrapeProviderApp(BaseModel):
    alert_rules: Json[Rules]
    scrape_jobs: Json[list[ScrapeJob]]
    scrape_metadata: Json[Topology]


class ScrapeProviderUnit(BaseModel):
    model_config = ConfigDict(extra="allow")
    prometheus_scrape_unit_address: str
    prometheus_scrape_unit_name: str
    prometheus_scrape_unit_path: str | None = None


class DashboardTemplate(BaseModel):
    charm: str
    content: str
    juju_topology: Topology
    inject_dropdowns: bool
    dashboard_alt_uid: str


class Dashboards(BaseModel):
    templates: dict[str, DashboardTemplate]
    uuid: str


class DashboardProviderApp(BaseModel):
    dashboards: Json[Dashboards]


class LokiRequirerApp(BaseModel):
    metadata: Json[Topology]
    alert_rules: Json[Rules | dict[str, Any]]


class OtlpRequirerApp(BaseModel):
    rules: Json[str]  # LZMA-compressed, base64-encoded JSON {"logql": ..., "promql": ...}
    metadata: Json[Topology]


# -- helpers -----------------------------------------------------------------------------------


def run(ctx, fs, relation, *, event: str = "changed", leader: bool = True) -> testing.State:
    state = testing.State(
        containers=pod(falco_container(fs)), relations={relation, peers()}, leader=leader
    )
    trigger = {
        "joined": ctx.on.relation_joined,
        "changed": ctx.on.relation_changed,
        "broken": ctx.on.relation_broken,
    }[event]
    return ctx.run(trigger(relation), state)


def forwarder_sinks(state: testing.State) -> list[dict[str, Any]]:
    source = Path(state.get_container("forwarder").mounts["config"].source)
    return json.loads((source / "config.json").read_text())["sinks"]


def loki_relation(endpoint: str, units: tuple[int, ...] = (0,)) -> testing.Relation:
    return testing.Relation(
        endpoint,
        remote_app_name="loki",
        remote_units_data={
            i: {"endpoint": json.dumps({"url": LOKI_URL.replace("loki-0", f"loki-{i}")})}
            for i in units
        },
    )


def otlp_relation(endpoints: list[dict[str, Any]]) -> testing.Relation:
    return testing.Relation(
        "send-otlp",
        remote_app_name="otelcol",
        remote_app_data={"endpoints": json.dumps(endpoints)},
    )


def alert_names(rules: Rules) -> set[str]:
    return {rule.alert for group in rules.groups for rule in group.rules}


# -- metrics-endpoint --------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["joined", "changed"])
def test_metrics_endpoint_publishes_every_scrape_job_rules_and_topology(ctx, falco_fs, event):
    relation = testing.Relation("metrics-endpoint", remote_app_name="prometheus")
    out = run(ctx, falco_fs, relation, event=event)

    local = out.get_relation(relation.id)
    app = ScrapeProviderApp.model_validate(local.local_app_data)
    unit = ScrapeProviderUnit.model_validate(local.local_unit_data)
    targets = {job.job_name: job.static_configs[0].targets for job in app.scrape_jobs}
    assert targets == {
        "falco": ["*:8765"],
        "alert-forwarder": ["*:9802"],
        "audit-intake": ["*:9803"],
    }
    assert app.scrape_metadata.application == "falco-k8s"
    assert {
        "FalcoDown",
        "FalcoSinkFailing",
        "FalcoAlertsDropped",
        "FalcoNoAuditEvents",
        "FalcoAuditPostsRefused",
    } <= alert_names(app.alert_rules)
    for group in app.alert_rules.groups:
        for rule in group.rules:
            assert f'juju_model_uuid="{app.scrape_metadata.model_uuid}"' in rule.expr
    assert unit.prometheus_scrape_unit_name == "falco-k8s/0"
    assert unit.prometheus_scrape_unit_address


def test_a_non_leader_publishes_only_its_own_address(ctx, falco_fs):
    relation = testing.Relation("metrics-endpoint", remote_app_name="prometheus")
    out = run(ctx, falco_fs, relation, leader=False)

    local = out.get_relation(relation.id)
    assert local.local_app_data == {}
    ScrapeProviderUnit.model_validate(local.local_unit_data)


def test_the_forwarder_listens_where_prometheus_can_scrape_it(ctx, falco_fs):
    relation = testing.Relation("metrics-endpoint", remote_app_name="prometheus")
    out = run(ctx, falco_fs, relation)

    source = Path(out.get_container("forwarder").mounts["config"].source)
    assert json.loads((source / "config.json").read_text())["listen"]["host"] == "0.0.0.0"


# -- grafana-dashboard -------------------------------------------------------------------------


def test_grafana_dashboard_sends_the_shipped_dashboard(ctx, falco_fs):
    relation = testing.Relation("grafana-dashboard", remote_app_name="grafana")
    out = run(ctx, falco_fs, relation, event="joined")

    app = DashboardProviderApp.model_validate(out.get_relation(relation.id).local_app_data)
    (template,) = app.dashboards.templates.values()
    shipped = json.loads((ROOT / "src/cos/grafana_dashboards/falco-k8s.json").read_text())
    assert json.loads(LZMABase64.decompress(template.content)) == shipped
    assert template.charm == "falco-k8s"
    assert template.inject_dropdowns


def test_an_unchanged_dashboard_sends_the_same_data(ctx, falco_fs):
    relation = testing.Relation("grafana-dashboard", remote_app_name="grafana")
    first = run(ctx, falco_fs, relation)
    second = ctx.run(ctx.on.update_status(), first)
    data = first.get_relation(relation.id).local_app_data
    assert second.get_relation(relation.id).local_app_data == data


# -- logging (Pebble log forwarding) -----------------------------------------------------------


def test_logging_forwards_both_services_logs_with_topology_labels(ctx, falco_fs):
    relation = loki_relation("logging", units=(0, 1))
    out = run(ctx, falco_fs, relation)

    for name in ("falco", "forwarder"):
        targets = out.get_container(name).plan.log_targets
        assert set(targets) == {"loki-loki-0", "loki-loki-1"}
        target = targets["loki-loki-0"]
        assert target.location == LOKI_URL
        assert target.services == ["all"]
        assert target.labels["juju_application"] == "falco-k8s"
        assert target.labels["juju_unit"] == "falco-k8s/0"
        assert target.labels["juju_charm"] == "falco-k8s"
    LokiRequirerApp.model_validate(out.get_relation(relation.id).local_app_data)


def test_logging_broken_switches_forwarding_off(ctx, falco_fs):
    relation = loki_relation("logging")
    joined = run(ctx, falco_fs, relation)
    out = ctx.run(ctx.on.relation_broken(joined.get_relation(relation.id)), joined)

    for name in ("falco", "forwarder"):
        targets = out.get_container(name).plan.to_dict()["log-targets"]
        assert targets["loki-loki-0"]["services"] == ["-all"]


# -- send-loki-logs ----------------------------------------------------------------------------


def test_send_loki_logs_adds_a_loki_sink_per_loki_unit_and_sends_the_loki_rules(ctx, falco_fs):
    relation = loki_relation("send-loki-logs")
    out = run(ctx, falco_fs, relation)

    assert [(s["name"], s["format"], s["url"]) for s in forwarder_sinks(out)] == [
        ("loki-0", "loki", LOKI_URL)
    ]
    app = LokiRequirerApp.model_validate(out.get_relation(relation.id).local_app_data)
    assert isinstance(app.alert_rules, Rules)
    assert {"FalcoCriticalAlert", "FalcoHotReloadFailed"} <= alert_names(app.alert_rules)
    assert app.metadata.application == "falco-k8s"
    assert "loki-0" in str(out.unit_status.message)


def test_send_loki_logs_broken_removes_the_sink(ctx, falco_fs):
    relation = loki_relation("send-loki-logs")
    joined = run(ctx, falco_fs, relation)
    out = ctx.run(ctx.on.relation_broken(joined.get_relation(relation.id)), joined)
    assert forwarder_sinks(out) == []


def test_a_loki_unit_yet_to_publish_is_no_sink(ctx, falco_fs):
    relation = testing.Relation(
        "send-loki-logs", remote_app_name="loki", remote_units_data={0: {}}
    )
    out = run(ctx, falco_fs, relation)
    assert forwarder_sinks(out) == []
    assert out.unit_status.name == "active"


@pytest.mark.parametrize("endpoint", ["send-loki-logs", "logging"])
@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("{oops", "is not JSON with a url"),
        ("[" * 100_000, "is not JSON with a url"),
        (json.dumps({"url": 7}), ": url must be a string"),
        (
            json.dumps({"url": "ftp://loki-1/push"}),
            ": only http:// and https:// URLs are accepted (got scheme 'ftp')",
        ),
    ],
)
def test_a_malformed_loki_endpoint_blocks_naming_the_relation_and_unit(
    ctx, falco_fs, endpoint, data, problem
):
    relation = testing.Relation(
        endpoint, remote_app_name="loki", remote_units_data={1: {"endpoint": data}}
    )
    out = run(ctx, falco_fs, relation)
    assert out.unit_status == testing.BlockedStatus(
        f"{endpoint} relation {relation.id}: loki/1's endpoint{'' if problem[0] == ':' else ' '}"
        + problem
    )


# -- send-otlp ---------------------------------------------------------------------------------


def test_send_otlp_adds_an_otlp_http_sink_and_publishes_rules_through_the_rule_store(
    ctx, falco_fs
):
    relation = otlp_relation(
        [
            {"protocol": "grpc", "endpoint": "otelcol:4317", "telemetries": ["logs"]},
            {"protocol": "http", "endpoint": OTLP_URL, "telemetries": ["logs", "traces"]},
        ]
    )
    out = run(ctx, falco_fs, relation)

    assert [(s["name"], s["format"], s["url"]) for s in forwarder_sinks(out)] == [
        (f"otlp-{relation.id}", "otlp-json", f"{OTLP_URL}/v1/logs")
    ]
    app = OtlpRequirerApp.model_validate(out.get_relation(relation.id).local_app_data)
    rules = json.loads(LZMABase64.decompress(app.rules))
    assert "FalcoCriticalAlert" in alert_names(Rules.model_validate(rules["logql"]))
    assert app.metadata.application == "falco-k8s"


def test_send_otlp_without_an_http_logs_endpoint_blocks_naming_the_relation(ctx, falco_fs):
    relation = otlp_relation(
        [{"protocol": "grpc", "endpoint": "otelcol:4317", "telemetries": ["logs"]}]
    )
    out = run(ctx, falco_fs, relation)
    assert out.unit_status == testing.BlockedStatus(
        f"send-otlp relation {relation.id}: no valid OTLP/HTTP endpoint for logs offered"
    )


def test_send_otlp_broken_removes_the_sink(ctx, falco_fs):
    relation = otlp_relation([{"protocol": "http", "endpoint": OTLP_URL, "telemetries": ["logs"]}])
    joined = run(ctx, falco_fs, relation)
    out = ctx.run(ctx.on.relation_broken(joined.get_relation(relation.id)), joined)
    assert forwarder_sinks(out) == []


def test_log_forwarding_adds_no_layer_when_nothing_changed(ctx, falco_fs, monkeypatch):
    added: list[str] = []
    real_add_layer = ops.Container.add_layer

    def spy(self: ops.Container, label: str, *args: Any, **kwargs: Any) -> None:
        added.append(f"{self.name}:{label}")
        real_add_layer(self, label, *args, **kwargs)

    monkeypatch.setattr(ops.Container, "add_layer", spy)
    first = run(ctx, falco_fs, loki_relation("logging"))
    assert {"falco:log-forwarding", "forwarder:log-forwarding"} <= set(added)
    added.clear()
    ctx.run(ctx.on.update_status(), first)
    assert [label for label in added if label.endswith("log-forwarding")] == []


def test_a_departed_loki_unit_takes_its_sink_and_its_log_target_with_it(ctx, falco_fs):
    sinks, logging = loki_relation("send-loki-logs", (0, 1)), loki_relation("logging", (0, 1))
    state = testing.State(
        containers=pod(falco_container(falco_fs)), relations={sinks, logging, peers()}, leader=True
    )
    state = ctx.run(ctx.on.relation_changed(logging), state)
    assert [s["name"] for s in forwarder_sinks(state)] == ["loki-0", "loki-1"]

    # Juju has removed loki/1 from both relations by the time it says so.
    left = {
        r.id: dataclasses.replace(r, remote_units_data={0: r.remote_units_data[0]})
        if isinstance(r, testing.Relation)
        else r
        for r in state.relations
    }
    state = dataclasses.replace(state, relations=set(left.values()))
    out = ctx.run(ctx.on.relation_departed(left[sinks.id], remote_unit=1), state)
    assert [s["name"] for s in forwarder_sinks(out)] == ["loki-0"]
    targets = out.get_container("falco").plan.to_dict()["log-targets"]
    assert targets["loki-loki-0"]["services"] == ["all"]
    assert targets["loki-loki-1"]["services"] == ["-all"]


@pytest.mark.parametrize("endpoint", ["metrics-endpoint", "grafana-dashboard"])
def test_a_broken_provider_relation_leaves_the_unit_active(ctx, falco_fs, endpoint):
    relation = testing.Relation(endpoint, remote_app_name="cos")
    joined = run(ctx, falco_fs, relation)
    out = ctx.run(ctx.on.relation_broken(joined.get_relation(relation.id)), joined)
    assert out.unit_status.name == "active"


def test_log_forwarding_waits_for_a_container_without_pebble(ctx, falco_fs):
    relation = loki_relation("logging")
    state = testing.State(containers=pod(falco_container(falco_fs)), relations={relation, peers()})
    forwarder = dataclasses.replace(state.get_container("forwarder"), can_connect=False)
    out = ctx.run(ctx.on.relation_changed(relation), with_container(state, forwarder))

    assert "loki-loki-0" in out.get_container("falco").plan.to_dict()["log-targets"]
    assert out.get_container("forwarder").layers == {}
