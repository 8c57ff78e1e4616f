"""Alert sinks in Scenario: http_output, the graylog (gelf) and falcosidekick relations."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from charm_pod import (
    ACTIVE,
    Calls,
    active,
    falco_container,
    forwarder_container,
    peers,
    pod,
    with_container,
)
from ops import testing

ALERT_LOG = "/var/lib/falco-alerts/log/falco.log"
TOKEN = "graylog-input-token-5f2c"
GRAYLOG_URL = "https://graylog.example.com:12201/gelf"
SIDEKICK_URL = "http://falcosidekick.models.svc:2801/"


def forwarder_fs(state: testing.State) -> Path:
    return Path(state.get_container("forwarder").mounts["config"].source)


def forwarder_config(state: testing.State) -> dict[str, Any]:
    return json.loads((forwarder_fs(state) / "config.json").read_text())


def falco_yaml(fs: Path) -> dict[str, Any]:
    return yaml.safe_load((fs / "etc-falco" / "falco.yaml").read_text())


def graylog_relation(**data: Any) -> testing.Relation:
    return testing.Relation(
        "graylog",
        remote_app_name="graylog",
        remote_app_data={key: json.dumps(value) for key, value in data.items()},
    )


def sidekick_relation(data: dict[str, str]) -> testing.Relation:
    return testing.Relation(
        "http-endpoint", remote_app_name="falcosidekick-k8s", remote_app_data=data
    )


def run(ctx, fs, *, relations=(), secrets=(), event=None, **config: Any) -> testing.State:
    state = testing.State(
        config=config,
        containers=pod(falco_container(fs)),
        relations={peers(), *relations},
        secrets=set(secrets),
        leader=True,
    )
    return ctx.run(event or ctx.on.config_changed(), state)


def test_http_output_goes_through_the_forwarder(ctx, falco_fs):
    out = run(ctx, falco_fs, http_output="https://siem.example.com/falco")

    assert falco_yaml(falco_fs)["file_output"]["filename"] == ALERT_LOG
    config = forwarder_config(out)
    assert config["sinks"] == [
        {
            "name": "http_output",
            "format": "falco-json",
            "url": "https://siem.example.com/falco",
            "headers": {},
            "ca_cert": None,
            "max_message_bytes": None,
        }
    ]
    assert config["listen"] == {"host": "0.0.0.0", "port": 9802}  # scraped by Prometheus
    assert config["alert_log"] == {
        "file": ALERT_LOG,
        "state_dir": "/var/lib/falco-alerts/state",
        "retention_bytes": 512 << 20,
        "segment_bytes": 32 << 20,
    }
    assert config["juju"]["application"] == "falco-k8s"
    assert out.unit_status == active(alerts_to="http_output")


def test_alert_dedup_window_reaches_the_forwarder_off_by_default(ctx, falco_fs):
    default = forwarder_config(run(ctx, falco_fs, http_output="https://siem.example.com/falco"))
    folding = run(
        ctx, falco_fs, http_output="https://siem.example.com/falco", alert_dedup_window=60
    )

    assert default["dedup_window_seconds"] == 0
    assert forwarder_config(folding)["dedup_window_seconds"] == 60
    assert folding.unit_status == active(alerts_to="http_output")


@pytest.mark.parametrize("window", [-1, 3601])
def test_a_bad_alert_dedup_window_blocks_naming_the_option(ctx, falco_fs, window: int):
    out = run(
        ctx, falco_fs, http_output="https://siem.example.com/falco", alert_dedup_window=window
    )

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith("alert_dedup_window")
    assert "0 (off) to 3600 (seconds)" in out.unit_status.message


def test_forwarder_runs_the_pushed_package_under_pebble(ctx, falco_fs):
    out = run(ctx, falco_fs, http_output="http://sink.example.com/")

    container = out.get_container("forwarder")
    service = container.plan.services["alert-forwarder"]
    assert (
        service.command == "python3 -m falco_forwarder --config /etc/falco-forwarder/config.json"
    )
    assert service.environment["PYTHONPATH"] == "/opt/falco-forwarder"
    assert container.plan.checks["forwarder-healthz"].http == {
        "url": "http://127.0.0.1:9802/healthz"
    }
    assert container.service_statuses["alert-forwarder"].value == "active"
    package = Path(container.mounts["code"].source) / "falco_forwarder"
    assert (package / "__main__.py").is_file()
    assert (package / "gelf.py").is_file()


def test_without_sinks_falco_still_writes_the_alert_log(ctx, falco_fs):
    out = run(ctx, falco_fs)

    assert falco_yaml(falco_fs)["file_output"]["filename"] == ALERT_LOG
    assert forwarder_config(out)["sinks"] == []
    assert out.unit_status == ACTIVE


def test_graylog_relation_adds_a_gelf_sink_with_the_secret_header(ctx, falco_fs):
    secret = testing.Secret({"value": TOKEN})
    relation = graylog_relation(
        url=GRAYLOG_URL,
        auth_header_name="Authorization",
        auth_secret_id=secret.id,
        max_message_bytes=32768,
    )

    joined = run(
        ctx,
        falco_fs,
        relations=[relation],
        secrets=[secret],
        event=ctx.on.relation_joined(relation),
    )
    relation = joined.get_relation(relation.id)
    out = ctx.run(ctx.on.relation_changed(relation), joined)

    [sink] = forwarder_config(out)["sinks"]
    assert sink == {
        "name": "graylog",
        "format": "gelf",
        "url": GRAYLOG_URL,
        "headers": {"Authorization": TOKEN},
        "ca_cert": None,
        "max_message_bytes": 32768,
    }
    config_file = forwarder_fs(out) / "config.json"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert TOKEN not in (falco_fs / "etc-falco" / "falco.yaml").read_text()
    assert not [line for line in ctx.juju_log if TOKEN in line.message]
    assert TOKEN not in out.unit_status.message
    # The library published our topology for the Graylog side to create an input and stream.
    local = relation.local_app_data
    assert json.loads(local["application"]) == "falco-k8s"


def test_the_graylog_relation_names_the_cluster_for_the_integrators_streams(ctx, falco_fs):
    """The gelf integrator routes a stream per cluster on the topology's ``cluster``."""
    relation = graylog_relation(url=GRAYLOG_URL)
    out = run(
        ctx,
        falco_fs,
        relations=[relation],
        event=ctx.on.relation_joined(relation),
        cluster_name="a",
    )
    assert json.loads(out.get_relation(relation.id).local_app_data["cluster"]) == "a"

    for config, published in (({"cluster_name": "b"}, '"b"'), ({}, None)):
        out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config=config))
        assert out.get_relation(relation.id).local_app_data.get("cluster") == published
        assert out.unit_status.name == "active"


def test_a_new_sink_reloads_the_forwarder_and_leaves_falco_alone(ctx, falco_fs, calls: Calls):
    out = run(ctx, falco_fs, http_output="https://siem.example.com/falco")
    falco_before = (falco_fs / "etc-falco" / "falco.yaml").read_bytes()
    calls.reset()

    relation = graylog_relation(url=GRAYLOG_URL)
    out = ctx.run(
        ctx.on.relation_changed(relation), dataclasses.replace(out, relations={relation})
    )

    assert [sink["name"] for sink in forwarder_config(out)["sinks"]] == ["http_output", "graylog"]
    assert calls.restarted == []
    assert calls.signals == [("SIGHUP", ("alert-forwarder",))]
    assert not [path for path in calls.pushed if path.startswith("falco:")]
    assert (falco_fs / "etc-falco" / "falco.yaml").read_bytes() == falco_before


def test_graylog_relation_broken_removes_the_sink(ctx, falco_fs):
    relation = graylog_relation(url=GRAYLOG_URL)
    out = run(ctx, falco_fs, relations=[relation])

    out = ctx.run(ctx.on.relation_broken(out.get_relation(relation.id)), out)

    assert forwarder_config(out)["sinks"] == []
    assert falco_yaml(falco_fs)["file_output"]["filename"] == ALERT_LOG


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"url": "ftp://graylog:12201/gelf"}, "graylog relation"),
        ({"url": GRAYLOG_URL, "max_message_bytes": "big"}, "graylog relation"),
        ({"url": GRAYLOG_URL, "auth_header_name": "Authorization"}, "graylog relation"),
    ],
)
def test_invalid_graylog_data_blocks_and_keeps_the_forwarder_config(ctx, falco_fs, data, message):
    out = run(ctx, falco_fs, http_output="https://siem.example.com/falco")
    before = (forwarder_fs(out) / "config.json").read_bytes()
    relation = graylog_relation(**data)

    blocked = ctx.run(
        ctx.on.relation_changed(relation), dataclasses.replace(out, relations={relation})
    )

    assert isinstance(blocked.unit_status, testing.BlockedStatus)
    assert blocked.unit_status.message.startswith(f"{message} {relation.id} (graylog)")
    assert (forwarder_fs(blocked) / "config.json").read_bytes() == before
    assert falco_yaml(falco_fs)["file_output"]["filename"] == ALERT_LOG


def test_falcosidekick_relation_adds_a_json_sink(ctx, falco_fs):
    relation = sidekick_relation({"url": json.dumps(SIDEKICK_URL)})

    out = run(ctx, falco_fs, relations=[relation])

    [sink] = forwarder_config(out)["sinks"]
    assert (sink["name"], sink["format"], sink["url"]) == (
        "falcosidekick",
        "falco-json",
        SIDEKICK_URL,
    )
    assert out.unit_status == active(alerts_to="falcosidekick")


def test_a_bad_falco_option_does_not_hold_back_a_new_sink(ctx, falco_fs):
    relation = sidekick_relation({"url": json.dumps(SIDEKICK_URL)})

    out = run(ctx, falco_fs, relations=[relation], minimum_priority="loud")

    assert [sink["url"] for sink in forwarder_config(out)["sinks"]] == [SIDEKICK_URL]
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("minimum_priority: must be one of")


def test_a_bad_sink_option_keeps_the_sinks_as_they_were(ctx, falco_fs):
    sidekick = sidekick_relation({"url": json.dumps(SIDEKICK_URL)})
    before = run(ctx, falco_fs, relations=[sidekick])
    graylog = graylog_relation(url=GRAYLOG_URL)

    out = ctx.run(
        ctx.on.relation_changed(graylog),
        dataclasses.replace(
            before, config={"http_output": "ftp://x"}, relations={sidekick, graylog}
        ),
    )

    # The old http_output sink stays (none here) and no new sink sneaks in half-configured.
    assert [sink["url"] for sink in forwarder_config(out)["sinks"]] == [SIDEKICK_URL]
    assert out.unit_status.message.startswith("http_output: only http:// and https://")


def test_falcosidekick_not_ready_yet_is_no_sink(ctx, falco_fs):
    out = run(ctx, falco_fs, relations=[sidekick_relation({})])

    assert forwarder_config(out)["sinks"] == []
    assert out.unit_status == ACTIVE


def test_invalid_falcosidekick_url_blocks(ctx, falco_fs):
    relation = sidekick_relation({"url": json.dumps("sidekick:2801")})

    out = run(ctx, falco_fs, relations=[relation])

    assert out.unit_status == testing.BlockedStatus(
        f"http-endpoint relation {relation.id}: url: only http:// and https:// URLs are "
        "accepted (got no scheme)"
    )


def test_waits_for_the_forwarder_container_when_there_are_sinks(ctx, falco_fs, tmp_path):
    state = testing.State(
        config={"http_output": "https://siem.example.com/falco"},
        containers=pod(
            falco_container(falco_fs), forwarder_container(tmp_path, can_connect=False)
        ),
        relations={peers()},
        leader=True,
    )

    out = ctx.run(ctx.on.config_changed(), state)

    assert out.unit_status == testing.WaitingStatus(
        "waiting for Pebble in the forwarder container"
    )


def test_forwarder_pebble_ready_converges_it(ctx, falco_fs):
    out = run(ctx, falco_fs, http_output="https://siem.example.com/falco")
    fresh = dataclasses.replace(
        out.get_container("forwarder"), layers={}, service_statuses={}, check_infos=frozenset()
    )
    state = with_container(out, fresh)

    out = ctx.run(ctx.on.pebble_ready(fresh), state)

    assert out.get_container("forwarder").service_statuses["alert-forwarder"].value == "active"


@pytest.mark.parametrize(
    "bogus",
    [
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        "\x80",  # not ASCII: ssl raises TypeError, not SSLError
    ],
    ids=["not a certificate", "not ASCII"],
)
def test_a_ca_the_forwarder_cannot_load_blocks_naming_the_relation(ctx, falco_fs, bogus):
    relation = sidekick_relation({"url": json.dumps(SIDEKICK_URL), "ca_cert": json.dumps(bogus)})

    out = run(ctx, falco_fs, relations=[relation])

    assert out.unit_status == testing.BlockedStatus(
        f"http-endpoint relation {relation.id}: falcosidekick.ca_cert is not a valid PEM"
        " certificate"
    )
