"""End to end on loopback: gelf-integrator provisions a (fake) Graylog, falco-k8s relates to it.

Both charms run in Scenario, each from the other's real relation data: falco-k8s's published
topology drives the integrator's provisioning; the integrator's databag and auth secret
configure falco-k8s, whose pushed forwarder config then runs the real forwarder, which
delivers Falco alerts to the fake Graylog's GELF HTTP input. The fake Graylog is the
integrator's stand-in (gelf-integrator/tests/unit/fake_graylog.py, see its docstring).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from charm_pod import falco_container, pod
from fakes.fake_falco import with_extra_fields
from forwarder.forwarder_helpers import append_alert, falco_alert, free_port
from ops import testing

from falco_forwarder.config import ForwarderConfig
from falco_forwarder.forwarder import Forwarder

INTEGRATOR = Path(__file__).resolve().parents[2] / "gelf-integrator"
API_TOKEN = "graylog-api-token-e2e-91c3"
FALCO_MODEL = testing.Model(name="cos", uuid="f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab")
INPUT_AUTH = "gelf-input-header-value-e2e"


def _load(name: str, path: Path) -> ModuleType:
    """Import one of the integrator's files under its own name: its `charm` is not ours."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def integrator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The integrator's charm module, with its own src/ importable (appended: ours win)."""
    monkeypatch.setattr(sys, "path", [*sys.path, str(INTEGRATOR / "src")])
    yield _load("gelf_integrator_charm", INTEGRATOR / "src" / "charm.py")
    for name in (
        "gelf_integrator_charm",
        "fake_graylog",
        "integrator_config",
        "graylog_api",
        "provisioning",
        "status_text",
    ):
        sys.modules.pop(name, None)


@pytest.fixture
def graylog(integrator: ModuleType) -> Iterator[Any]:
    fake_graylog = _load("fake_graylog", INTEGRATOR / "tests" / "unit" / "fake_graylog.py")
    graylog = fake_graylog.FakeGraylog(tokens={API_TOKEN: frozenset({"*"})})
    yield graylog
    graylog.stop()


def feed_alerts(forwarder: Forwarder, alerts: list[dict[str, Any]]) -> None:
    """Hand Falco's alerts to the forwarder: Falco appends each to the alert log it tails."""
    for alert in alerts:
        append_alert(forwarder, json.dumps(alert).encode())


def running_forwarder(pushed: dict[str, Any], tmp_path: Path) -> Forwarder:
    """The forwarder on the config the charm pushed, with a loopback listener and a temp log."""
    config = {
        **pushed,
        "listen": {"host": "127.0.0.1", "port": 0},
        "alert_log": {
            **pushed["alert_log"],
            "file": str(tmp_path / "log" / "falco.log"),
            "state_dir": str(tmp_path / "state"),
        },
    }
    forwarder = Forwarder(ForwarderConfig.from_dict(config))
    forwarder.start()
    return forwarder


def relate(
    ctx: testing.Context[Any],
    falco_fs: Path,
    integrator: ModuleType,
    graylog: Any,
    **falco_config: Any,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Relate falco-k8s (with ``falco_config``) and the integrator, each on the other's data.

    Returns the topology falco-k8s published and the forwarder config it pushed.
    """
    # falco-k8s joins and publishes its topology.
    falco_side = testing.Relation("graylog", remote_app_name="gelf-integrator")
    falco_state = testing.State(
        leader=True,
        model=FALCO_MODEL,
        config=falco_config,
        containers=pod(falco_container(falco_fs)),
        relations={falco_side},
    )
    joined = ctx.run(ctx.on.relation_joined(falco_side), falco_state)
    topology = dict(joined.get_relation(falco_side.id).local_app_data)

    # The integrator sees it, provisions Graylog and publishes the endpoint.
    gelf_port = free_port()
    api_token = testing.Secret(tracked_content={"token": API_TOKEN})
    input_auth = testing.Secret(tracked_content={"value": INPUT_AUTH})
    gelf_side = testing.Relation("gelf", remote_app_name="falco-k8s", remote_app_data=topology)
    integrator_ctx = testing.Context(integrator.GelfIntegratorCharm)
    provided = integrator_ctx.run(
        integrator_ctx.on.relation_changed(gelf_side),
        testing.State(
            leader=True,
            relations={gelf_side},
            secrets={api_token, input_auth},
            config={
                "gelf_url": f"http://127.0.0.1:{gelf_port}/gelf",
                "auth_header": "X-Gelf-Auth",
                "auth_secret": input_auth.id,
                "api_url": graylog.url,
                "api_token_secret": api_token.id,
            },
        ),
    )
    assert provided.unit_status.name == "active", provided.unit_status
    databag = dict(provided.get_relation(gelf_side.id).local_app_data)
    own_secret = provided.get_secret(label=integrator.AUTH_SECRET_LABEL)
    assert API_TOKEN not in json.dumps(databag)
    assert INPUT_AUTH not in json.dumps(databag)

    # falco-k8s reads the integrator's databag and the secret granted to it.
    granted = testing.Secret(id=own_secret.id, tracked_content=own_secret.latest_content)
    falco_side = testing.Relation(
        "graylog",
        id=falco_side.id,
        remote_app_name="gelf-integrator",
        remote_app_data=databag,
        local_app_data=topology,
    )
    configured = ctx.run(
        ctx.on.relation_changed(falco_side),
        testing.State(
            leader=True,
            model=FALCO_MODEL,
            config=falco_config,
            containers=joined.containers,
            relations={falco_side},
            secrets={granted},
        ),
    )
    config_dir = Path(configured.get_container("forwarder").mounts["config"].source)
    return topology, json.loads((config_dir / "config.json").read_text())


def deliver(pushed: dict[str, Any], alerts: list[dict[str, Any]], graylog: Any, tmp_path: Path):
    """Run the forwarder on the pushed config until the fake Graylog has ``alerts``."""
    forwarder = running_forwarder(pushed, tmp_path)
    try:
        feed_alerts(forwarder, alerts)
        return graylog.wait_for_messages(len(alerts))
    finally:
        forwarder.close()


def test_falco_alerts_reach_the_provisioned_stream_with_their_topology(
    ctx, falco_fs, integrator, graylog, tmp_path
):
    topology, pushed = relate(ctx, falco_fs, integrator, graylog)

    model, application = json.loads(topology["model"]), json.loads(topology["application"])
    assert (model, application) == ("cos", "falco-k8s")
    assert "cluster" not in topology
    title = f"Falco alerts: {model}/{application}"
    assert title in {s["title"] for s in graylog.streams.values() if not s["disabled"]}
    (gelf_input,) = graylog.inputs.values()
    assert gelf_input.summary["attributes"]["authorization_header_name"] == "X-Gelf-Auth"
    assert [s["name"] for s in pushed["sinks"]] == ["graylog"]

    # The forwarder on that config delivers alerts; each is routed by its topology.
    received = deliver(pushed, [falco_alert(i) for i in range(3)], graylog, tmp_path)
    assert sorted(m.fields["ka_resp_name"] for m in received) == ["nginx-0", "nginx-1", "nginx-2"]
    for message in received:
        assert message.fields["juju_model"] == model
        assert message.fields["juju_application"] == application
        assert message.fields["falco_rule"] == "Create Privileged Pod"
        assert title in message.streams
    assert not [rejected for i in graylog.inputs.values() for rejected in i.rejected]


def test_the_cluster_falco_names_routes_its_alerts_to_the_clusters_stream(
    ctx, falco_fs, integrator, graylog, tmp_path
):
    topology, pushed = relate(ctx, falco_fs, integrator, graylog, cluster_name="prod-eu-1")

    assert json.loads(topology["cluster"]) == "prod-eu-1"
    title = "Falco alerts: prod-eu-1/cos/falco-k8s"
    assert title in {s["title"] for s in graylog.streams.values() if not s["disabled"]}
    # Falco on the falco.yaml the charm wrote names the cluster; one alert from another
    # cluster of the same model and application must stay out of this cluster's stream.
    falco_yaml = yaml.safe_load((falco_fs / "etc-falco" / "falco.yaml").read_text())
    other = {"append_output": [{"extra_fields": [{"cluster": "staging"}]}]}
    alerts = [with_extra_fields(falco_alert(i), falco_yaml) for i in range(3)]
    alerts.append(with_extra_fields(falco_alert(3), other))

    received = deliver(pushed, alerts, graylog, tmp_path)
    routed = {
        m.fields["ka_resp_name"]: (m.fields["cluster"], title in m.streams) for m in received
    }
    assert routed == {
        "nginx-0": ("prod-eu-1", True),
        "nginx-1": ("prod-eu-1", True),
        "nginx-2": ("prod-eu-1", True),
        "nginx-3": ("staging", False),
    }
