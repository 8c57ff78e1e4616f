"""Bad input through the whole charm (Scenario): a clear Blocked or note, no hook error.

Each case feeds one option or relation datum the way Juju hands it over and checks what the
operator sees and that the last good files stay as they were.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from charm_pod import active, peers, unit_state
from ops import testing

from report import STATUS_MAX_CHARS

NS = "audit"


def deployed(ctx, fs: Path, *relations: Any, **config: Any) -> testing.State:
    """A leader after its first pebble-ready, with its peer relation and ``relations``."""
    state = unit_state(fs, NS, relations={peers(), *relations}, **config)
    return ctx.run(ctx.on.pebble_ready(state.get_container("falco")), state)


def reconfigure(ctx, state: testing.State, **config: Any) -> testing.State:
    return ctx.run(ctx.on.config_changed(), dataclasses.replace(state, config=config))


def live_falco(fs: Path) -> dict[str, bytes]:
    """Every file Falco runs on, by name."""
    root = fs / "etc-falco"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def peer_bytes(state: testing.State) -> int:
    [relation] = [r for r in state.relations if r.endpoint == "falco-peers"]
    assert isinstance(relation, testing.PeerRelation)
    return len(json.dumps(dict(relation.local_unit_data)))


def assert_blocked(state: testing.State, message: str) -> None:
    assert isinstance(state.unit_status, testing.BlockedStatus), state.unit_status
    assert state.unit_status.message == message
    assert len(state.unit_status.message) <= STATUS_MAX_CHARS


# -- disabled_rules ----------------------------------------------------------------------------


def test_disabled_rules_over_the_size_limit_blocks_and_keeps_the_peer_data_small(ctx, falco_fs):
    out = deployed(ctx, falco_fs)
    before = live_falco(falco_fs)

    blocked = reconfigure(ctx, out, disabled_rules="Rule A," * (4 * 1024 * 1024 // 7))

    assert_blocked(
        blocked,
        "disabled_rules: 4194302 bytes, over the limit of 16384; use tag:<tag> entries",
    )
    assert live_falco(falco_fs) == before
    assert peer_bytes(blocked) < 64 * 1024


def test_disabled_rules_with_too_many_entries_blocks(ctx, falco_fs):
    out = deployed(ctx, falco_fs)
    before = live_falco(falco_fs)

    blocked = reconfigure(ctx, out, disabled_rules=",".join(f"r{i}" for i in range(300)))

    assert_blocked(
        blocked, "disabled_rules: 300 entries, over the limit of 256; use tag:<tag> entries"
    )
    assert live_falco(falco_fs) == before


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\u202e"], ids=["NUL", "ESC", "RLO"])
def test_disabled_rules_with_control_characters_blocks_without_echoing_them(
    ctx, falco_fs, character
):
    out = deployed(ctx, falco_fs)
    before = live_falco(falco_fs)

    blocked = reconfigure(ctx, out, disabled_rules=f"Disallowed K8s User, evil{character}[2J")

    assert_blocked(
        blocked,
        f"disabled_rules: entry 2 holds U+{ord(character):04X}, a control or direction"
        " character no rule name has",
    )
    assert live_falco(falco_fs) == before


@pytest.mark.parametrize("value", ["*", "**", "tag:k8s", "Disallowed K8s User, tag:falco_k8s"])
def test_disabling_every_rule_says_detection_is_off(ctx, falco_fs, value):
    out = reconfigure(ctx, deployed(ctx, falco_fs), disabled_rules=value)

    assert out.unit_status == active("disabled_rules switches off every rule: detection is off")


def test_disabling_some_rules_leaves_detection_on(ctx, falco_fs):
    out = reconfigure(ctx, deployed(ctx, falco_fs), disabled_rules="Disallowed*")

    assert out.unit_status == active()


# -- URLs: http_output and falcosidekick -------------------------------------------------------


def sidekick_relation(url: str) -> testing.Relation:
    return testing.Relation(
        "http-endpoint", remote_app_name="falcosidekick-k8s", remote_app_data={"url": url}
    )


def forwarder_config(state: testing.State) -> bytes | None:
    config = Path(state.get_container("forwarder").mounts["config"].source) / "config.json"
    return config.read_bytes() if config.exists() else None


@pytest.mark.parametrize("character", ["/", "?", "#", "@"])
def test_a_password_with_an_unencoded_delimiter_is_never_echoed(ctx, falco_fs, character):
    url = f"http://alice:pa{character}ss-s3cret@alerts.example.com:99999/falco"
    out = reconfigure(ctx, deployed(ctx, falco_fs), http_output="http://alerts.example.com/")
    before = forwarder_config(out)

    blocked = reconfigure(ctx, out, http_output=url)

    assert_blocked(
        blocked,
        "http_output: the URL's host or port is malformed (percent-encode /?#@ in a password)",
    )
    assert forwarder_config(blocked) == before


@pytest.mark.parametrize("character", ["/", "?", "#", "@"])
def test_a_falcosidekick_url_password_is_never_echoed(ctx, falco_fs, character):
    relation = sidekick_relation(json.dumps(f"http://alice:pa{character}ss-s3cret@sk:0x/"))

    out = deployed(ctx, falco_fs, relation)

    assert_blocked(
        out,
        f"http-endpoint relation {relation.id}: url: the URL's host or port is malformed"
        " (percent-encode /?#@ in a password)",
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://alerts.example.com:0/", "http_output: the URL's port must be 1 to 65535, not 0"),
        (
            "http://alerts.example.com/" + "a" * 1024 * 1024,
            "http_output: the URL is 1048602 characters long; the limit is 2048",
        ),
        (
            "http://alerts.example.com/\nfalco",
            "http_output: the URL must be visible ASCII: no space, control or non-ASCII character",
        ),
    ],
    ids=["port 0", "1 MiB", "a newline"],
)
def test_a_url_no_server_answers_blocks(ctx, falco_fs, url, message):
    out = deployed(ctx, falco_fs)

    assert_blocked(reconfigure(ctx, out, http_output=url), message)


# -- send-otlp ---------------------------------------------------------------------------------


def otlp_relation(endpoints: str) -> testing.Relation:
    return testing.Relation(
        "send-otlp", remote_app_name="otelcol", remote_app_data={"endpoints": endpoints}
    )


HTTP_LOGS = {"protocol": "http", "telemetries": ["logs"]}


@pytest.mark.parametrize(
    ("endpoints", "problem"),
    [
        ("not json", "endpoints is not JSON"),
        ("[" * 100_000, "endpoints is not JSON"),
        (json.dumps([{"protocol": "http"}]), "no valid OTLP/HTTP endpoint for logs offered"),
        (json.dumps({"endpoint": "x"}), "no valid OTLP/HTTP endpoint for logs offered"),
        (
            json.dumps([{**HTTP_LOGS, "endpoint": "http://otel:0"}]),
            "endpoint: the URL's port must be 1 to 65535, not 0",
        ),
    ],
    ids=["not JSON", "deep JSON", "no endpoint field", "not a list", "port 0"],
)
def test_bad_otlp_endpoints_block_naming_the_relation(ctx, falco_fs, endpoints, problem):
    good = otlp_relation(json.dumps([{**HTTP_LOGS, "endpoint": "http://otel:4318"}]))
    out = deployed(ctx, falco_fs, good)
    before = forwarder_config(out)
    assert before is not None
    assert b"http://otel:4318/v1/logs" in before
    bad = dataclasses.replace(good, remote_app_data={"endpoints": endpoints})

    out = ctx.run(
        ctx.on.relation_changed(bad),
        dataclasses.replace(out, relations={*out.relations - {out.get_relation(good.id)}, bad}),
    )

    assert_blocked(out, f"send-otlp relation {good.id}: {problem}")
    assert forwarder_config(out) == before


# -- the webhook's Service and NetworkPolicy ---------------------------------------------------

SERVICE = f"/api/v1/namespaces/{NS}/services/falco-k8s-audit-webhook"
NETWORKPOLICY = (
    f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/falco-k8s-audit-webhook"
)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("fe80::1%eth0", "is scoped: a Service takes a plain address"),
        ("0.0.0.0", "is an unspecified address, never a Service's"),
        ("::", "is an unspecified address, never a Service's"),
        ("127.0.0.1", "is a loopback address, never a Service's"),
        ("::1", "is a loopback address, never a Service's"),
        ("169.254.0.10", "is a link-local address, never a Service's"),
        ("fe80::10", "is a link-local address, never a Service's"),
        ("224.0.0.1", "is a multicast address, never a Service's"),
        ("10.0.0.300", "is not an IP address"),
    ],
)
def test_a_cluster_ip_no_service_can_have_blocks_naming_the_option(
    ctx, falco_fs, kube_api, value, problem
):
    out = deployed(ctx, falco_fs)
    service = kube_api.objects[SERVICE]

    out = reconfigure(ctx, out, webhook_cluster_ip=value)

    assert_blocked(out, f"webhook_cluster_ip {value!r} {problem}")
    assert kube_api.objects[SERVICE] == service


def test_a_scoped_allowed_cidr_blocks_naming_the_option(ctx, falco_fs, kube_api):
    out = reconfigure(ctx, deployed(ctx, falco_fs), webhook_allowed_cidrs="10.0.0.0/8")
    policy = kube_api.objects[NETWORKPOLICY]

    out = reconfigure(ctx, out, webhook_allowed_cidrs="10.0.0.0/8, fe80::1%eth0/64")

    assert_blocked(out, "webhook_allowed_cidrs: 'fe80::1%eth0/64' is scoped: give a plain CIDR")
    assert kube_api.objects[NETWORKPOLICY] == policy


@pytest.mark.parametrize("everyone", ["0.0.0.0/0", "::/0", "10.1.2.3/0"])
def test_allowed_cidrs_that_let_everyone_in_say_so(ctx, falco_fs, kube_api, everyone):
    out = reconfigure(ctx, deployed(ctx, falco_fs), webhook_allowed_cidrs=f"10.0.0.0/8,{everyone}")

    cidr = "::/0" if ":" in everyone else "0.0.0.0/0"
    assert out.unit_status == active(
        f"webhook_allowed_cidrs {cidr} lets every address reach the webhook"
    )
