"""The integrator in Scenario: options, secrets, one and two requirers, provisioning."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import ops
import pytest
from fake_graylog import FakeGraylog, free_port
from ops import testing

from charm import AUTH_SECRET_LABEL, GelfIntegratorCharm

GELF_URL = "http://graylog.example.com:12201/gelf"
WHERE = "alerts to graylog.example.com:12201"
INPUT_TOKEN = "input-header-value-7d1e"
API_TOKEN = "graylog-api-token-0f9a8b7c6d5e4f3a2b1c"
# Looks like PEM to the gelf library (base64 between the markers) but is no certificate.
PEM_LOOKALIKE = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
FALCO_TOPOLOGY = {
    "model": "cos",
    "model_uuid": "f2c5e3a1-7b4d-4e2a-9c1d-0123456789ab",
    "application": "falco-k8s",
    "charm": "falco-k8s",
}


@pytest.fixture
def ctx() -> testing.Context[GelfIntegratorCharm]:
    return testing.Context(GelfIntegratorCharm)


def requirer(
    app: str = "falco-k8s", model: str = "cos", remote_app_data_extra=None, **kwargs: Any
) -> testing.Relation:
    topology = {
        **FALCO_TOPOLOGY,
        "application": app,
        "model": model,
        **(remote_app_data_extra or {}),
    }
    return testing.Relation(
        "gelf",
        remote_app_name=app,
        remote_app_data={k: json.dumps(v) for k, v in topology.items()},
        **kwargs,
    )


def user_secret(content: dict[str, str], **kwargs: Any) -> testing.Secret:
    """A user secret granted to the integrator (owner None: the model owns it)."""
    return testing.Secret(tracked_content=content, **kwargs)


def state(*, relations=(), secrets=(), leader: bool = True, **config: Any) -> testing.State:
    return testing.State(
        leader=leader,
        config={"gelf_url": GELF_URL, **config},
        relations=set(relations),
        secrets=set(secrets),
    )


def published(out: testing.State, relation: testing.Relation) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in out.get_relation(relation.id).local_app_data.items()}


def everything_visible(ctx: testing.Context, out: testing.State, caplog) -> str:
    """Status, every databag, juju-log lines and Python log records, as one text."""
    parts = [out.unit_status.message, out.app_status.message, caplog.text]
    parts += [line.message for line in ctx.juju_log]
    for relation in out.relations:
        parts += [
            json.dumps(dict(relation.local_app_data)),
            json.dumps(dict(relation.local_unit_data)),
        ]
    return "\n".join(parts)


# -- options ----------------------------------------------------------------------------------


def test_publishes_the_endpoint_and_says_where_alerts_go(ctx):
    relation = requirer()

    out = ctx.run(
        ctx.on.relation_joined(relation), state(relations=[relation], max_message_bytes=32768)
    )

    assert published(out, relation) == {
        "url": GELF_URL,
        "auth_header_name": None,
        "auth_secret_id": None,
        "ca_cert": None,
        "max_message_bytes": 32768,
    }
    assert out.unit_status == testing.ActiveStatus(f"{WHERE}; 1 requirer app")


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"gelf_url": ""}, "gelf_url: required, e.g. http://graylog.example.com:12201/gelf"),
        ({"gelf_url": "ftp://graylog:12201/gelf"}, "gelf_url: must be an http(s) URL with a host"),
        ({"gelf_url": "http://graylog:12201"}, "gelf_url: must include the input path"),
        (
            {"gelf_url": "http://graylog:99999/gelf"},
            "gelf_url: must be an http(s) URL with a valid host and port",
        ),
        ({"gelf_url": "http://graylog:0/gelf"}, "gelf_url: the port must be 1-65535"),
        ({"gelf_url": "http://u:p@graylog:12201/gelf"}, "gelf_url: must not embed credentials"),
        ({"auth_header": "Authorization"}, "auth_header and auth_secret: set both or neither"),
        (
            {"auth_header": "Bad Header", "auth_secret": "secret:d0c5ct7m7cks7q8rpgp0"},
            "auth_header: must be an HTTP header name",
        ),
        ({"ca_cert": "not a pem"}, "ca_cert: must be one or more PEM certificates"),
        (
            {"ca_cert": PEM_LOOKALIKE},
            "ca_cert: OpenSSL cannot load it as a CA certificate (",
        ),
        ({"max_message_bytes": 0}, "max_message_bytes: must be a whole number from 1 to"),
        (
            {"max_message_bytes": 2**31},
            "max_message_bytes: must be a whole number from 1 to 2147483647",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_an_invalid_option_blocks_naming_it_and_publishes_nothing(ctx, config, reason):
    relation = requirer()

    out = ctx.run(ctx.on.config_changed(), state(relations=[relation], **config))

    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith(reason)
    assert out.get_relation(relation.id).local_app_data == {}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"api_url": "https://graylog:9000/api"}, "api_url and api_token_secret: set both"),
        (
            {"api_url": "graylog:9000", "api_token_secret": "secret:d0c5ct7m7cks7q8rpgp0"},
            "api_url: must be an http(s) URL",
        ),
        (
            {
                "api_url": "https://admin:pw@graylog:9000/api",
                "api_token_secret": "secret:d0c5ct7m7cks7q8rpgp0",
            },
            "api_url: no credentials",
        ),
        (
            {
                "gelf_url": "https://graylog.example.com/gelf",
                "api_url": "https://graylog:9000/api",
                "api_token_secret": "secret:d0c5ct7m7cks7q8rpgp0",
            },
            "gelf_url: write the input's port (e.g. :12201); api_url provisions it",
        ),
    ],
)
def test_an_invalid_provisioning_option_blocks_but_the_endpoint_is_published(ctx, config, reason):
    relation = requirer()

    out = ctx.run(ctx.on.config_changed(), state(relations=[relation], **config))

    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith(reason)
    assert published(out, relation)["url"] == config.get("gelf_url", GELF_URL)


def test_a_bad_option_keeps_what_was_published(ctx):
    relation = requirer()
    good = ctx.run(ctx.on.config_changed(), state(relations=[relation]))

    bad = ctx.run(
        ctx.on.config_changed(),
        testing.State(leader=True, config={"gelf_url": "nope"}, relations=good.relations),
    )

    assert bad.unit_status.name == "blocked"
    assert published(bad, relation)["url"] == GELF_URL


def test_the_non_leader_validates_but_does_not_publish(ctx):
    relation = requirer()

    out = ctx.run(ctx.on.config_changed(), state(relations=[relation], leader=False))

    assert out.get_relation(relation.id).local_app_data == {}
    assert out.unit_status == testing.ActiveStatus(
        f"{WHERE}; 1 requirer app (published by the leader)"
    )


# -- the auth secret ---------------------------------------------------------------------------


def test_the_auth_value_goes_to_requirers_in_a_secret_of_its_own(ctx, caplog):
    caplog.set_level(logging.DEBUG)
    auth = user_secret({"value": INPUT_TOKEN})
    relation = requirer()

    out = ctx.run(
        ctx.on.relation_joined(relation),
        state(
            relations=[relation], secrets=[auth], auth_header="Authorization", auth_secret=auth.id
        ),
    )

    data = published(out, relation)
    assert data["auth_header_name"] == "Authorization"
    own = out.get_secret(label=AUTH_SECRET_LABEL)
    assert data["auth_secret_id"] == own.id
    assert own.tracked_content == {"value": INPUT_TOKEN}
    assert relation.id in set(own.remote_grants)
    assert INPUT_TOKEN not in everything_visible(ctx, out, caplog)


AUTH_CONFIG = {"auth_header": "Authorization"}


def published_with_auth(ctx) -> tuple[testing.State, testing.Relation, testing.Secret]:
    """A leader that published an endpoint with an auth secret to one requirer."""
    auth = user_secret({"value": INPUT_TOKEN})
    relation = requirer()
    config = {**AUTH_CONFIG, "auth_secret": auth.id}
    out = ctx.run(ctx.on.config_changed(), state(relations=[relation], secrets=[auth], **config))
    return out, relation, auth


def test_a_rotated_user_secret_updates_the_published_secret(ctx):
    first, relation, auth = published_with_auth(ctx)
    own = first.get_secret(label=AUTH_SECRET_LABEL)
    rotated = dataclasses.replace(auth, latest_content={"value": "rotated-value"})

    out = ctx.run(
        ctx.on.secret_changed(rotated),
        dataclasses.replace(first, secrets={rotated, own}),
    )

    assert out.get_secret(label=AUTH_SECRET_LABEL).latest_content == {"value": "rotated-value"}
    assert published(out, relation)["auth_secret_id"] == own.id


def test_an_unchanged_secret_makes_no_new_revision(ctx, monkeypatch):
    first, _, _ = published_with_auth(ctx)
    revisions = []
    monkeypatch.setattr(ops.Secret, "set_content", lambda self, content: revisions.append(content))

    ctx.run(ctx.on.update_status(), first)

    assert revisions == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"token": INPUT_TOKEN}, "auth_secret: the secret has no 'value' key"),
        (
            {"value": "line\r\nX-Injected: 1"},
            "auth_secret: 'value' is not a valid HTTP header value",
        ),
    ],
)
def test_a_bad_auth_secret_blocks(ctx, content, reason):
    auth = user_secret(content)

    out = ctx.run(
        ctx.on.config_changed(), state(secrets=[auth], auth_header="X", auth_secret=auth.id)
    )

    assert out.unit_status == testing.BlockedStatus(reason)


def test_an_ungranted_secret_says_how_to_grant_it(ctx):
    out = ctx.run(
        ctx.on.config_changed(), state(auth_header="X", auth_secret="secret:d0c5ct7m7cks7q8rpgp0")
    )

    assert out.unit_status == testing.BlockedStatus(
        "auth_secret: cannot read the secret; run juju grant-secret <secret> gelf-integrator"
    )


# -- requirers ---------------------------------------------------------------------------------


def test_two_requirers_each_get_the_endpoint(ctx):
    one, two = requirer(), requirer("falco-edge", "edge")

    out = ctx.run(ctx.on.relation_joined(two), state(relations=[one, two]))

    assert published(out, one)["url"] == published(out, two)["url"] == GELF_URL
    assert out.unit_status == testing.ActiveStatus(f"{WHERE}; 2 requirer apps")


@pytest.mark.parametrize("count", [1, 2])
def test_relation_changed_with_a_topology_reconciles(ctx, count):
    relations = [requirer(), requirer("falco-edge", "edge")][:count]

    out = ctx.run(ctx.on.relation_changed(relations[-1]), state(relations=relations))

    assert all(published(out, r)["url"] == GELF_URL for r in relations)
    assert out.unit_status.message.endswith(f"{count} requirer app{'s' * (count > 1)}")


def test_a_requirer_without_a_topology_yet_gets_the_endpoint_and_nothing_blocks(ctx):
    relation = testing.Relation("gelf", remote_app_name="falco-k8s")

    out = ctx.run(ctx.on.relation_changed(relation), state(relations=[relation]))

    assert published(out, relation)["url"] == GELF_URL
    assert out.unit_status == testing.ActiveStatus(f"{WHERE}; 1 requirer app")


def test_a_requirer_with_a_bad_topology_blocks_naming_its_relation(ctx):
    relation = requirer()
    relation = dataclasses.replace(
        relation, remote_app_data={**relation.remote_app_data, "model_uuid": '"not-a-uuid"'}
    )

    out = ctx.run(ctx.on.relation_changed(relation), state(relations=[relation]))

    assert out.unit_status == testing.BlockedStatus(
        f"gelf relation {relation.id} (falco-k8s): model_uuid: must be a UUID"
    )
    assert published(out, relation)["url"] == GELF_URL


def test_a_broken_relation_is_no_longer_counted(ctx):
    one, two = requirer(), requirer("falco-edge", "edge")

    out = ctx.run(ctx.on.relation_broken(two), state(relations=[one, two]))

    assert out.unit_status == testing.ActiveStatus(f"{WHERE}; 1 requirer app")


# -- provisioning ------------------------------------------------------------------------------


@pytest.fixture
def graylog(make_graylog) -> FakeGraylog:
    return make_graylog(tokens={API_TOKEN: frozenset({"*"})})


def provisioning_state(graylog: FakeGraylog, port: int, *, relations, secrets=(), **config):
    token = user_secret({"token": API_TOKEN})
    return state(
        relations=relations,
        secrets=[token, *secrets],
        gelf_url=f"http://127.0.0.1:{port}/gelf",
        api_url=graylog.url,
        api_token_secret=token.id,
        **config,
    )


def test_provisions_a_stream_per_requirer_and_pauses_a_broken_ones(ctx, graylog, caplog):
    caplog.set_level(logging.DEBUG)
    port = free_port()
    one, two = requirer(), requirer("falco-edge", "edge")
    start = provisioning_state(graylog, port, relations=[one, two])

    joined = ctx.run(ctx.on.relation_joined(two), start)

    titles = {s["title"]: s for s in graylog.streams.values()}
    assert not titles["Falco alerts: cos/falco-k8s"]["disabled"]
    assert not titles["Falco alerts: edge/falco-edge"]["disabled"]
    assert joined.unit_status == testing.ActiveStatus(
        f"alerts to 127.0.0.1:{port}; 2 requirer apps; "
        "Graylog 7.1.7+3b6c2a1: input running, 2 streams"
    )

    graylog.requests.clear()
    broken = ctx.run(ctx.on.relation_broken(two), start)

    edge = titles["Falco alerts: edge/falco-edge"]
    assert graylog.writes == [("POST", f"/api/streams/{edge['id']}/pause")]
    assert edge["disabled"] is True
    assert broken.unit_status.message.endswith("input running, 1 stream")
    assert API_TOKEN not in everything_visible(ctx, broken, caplog)
    assert API_TOKEN not in everything_visible(ctx, joined, caplog)


def test_an_unreachable_graylog_waits_and_the_next_hook_retries(ctx, graylog):
    port = free_port()
    relation = requirer()
    token = user_secret({"token": API_TOKEN})
    down = state(
        relations=[relation],
        secrets=[token],
        gelf_url=f"http://127.0.0.1:{port}/gelf",
        api_url=f"http://127.0.0.1:{free_port()}/api",
        api_token_secret=token.id,
    )

    out = ctx.run(ctx.on.update_status(), down)

    assert out.unit_status.name == "waiting"
    assert out.unit_status.message.startswith("api_url: Graylog API: ")
    assert out.unit_status.message.endswith("; retrying")
    assert published(out, relation)["url"] == f"http://127.0.0.1:{port}/gelf"

    up = ctx.run(ctx.on.update_status(), provisioning_state(graylog, port, relations=[relation]))
    assert up.unit_status.name == "active"


def test_a_token_graylog_rejects_blocks_without_showing_it(ctx, make_graylog, caplog):
    graylog = make_graylog(tokens={"another-token": frozenset({"*"})})
    port = free_port()

    out = ctx.run(
        ctx.on.config_changed(), provisioning_state(graylog, port, relations=[requirer()])
    )

    assert out.unit_status == testing.BlockedStatus(
        "api_token_secret: Graylog rejected the token (HTTP 401)"
    )
    assert API_TOKEN not in everything_visible(ctx, out, caplog)


def test_a_rotated_token_is_used_at_once(ctx, make_graylog):
    graylog = make_graylog(tokens={"new-token-value": frozenset({"*"})})
    port = free_port()
    token = testing.Secret(
        tracked_content={"token": API_TOKEN}, latest_content={"token": "new-token-value"}
    )
    start = state(
        relations=[requirer()],
        secrets=[token],
        gelf_url=f"http://127.0.0.1:{port}/gelf",
        api_url=graylog.url,
        api_token_secret=token.id,
    )

    out = ctx.run(ctx.on.secret_changed(token), start)

    assert out.unit_status.name == "active"


def test_a_token_secret_without_a_token_key_blocks(ctx, graylog):
    token = user_secret({"value": API_TOKEN})

    out = ctx.run(
        ctx.on.config_changed(),
        state(secrets=[token], api_url=graylog.url, api_token_secret=token.id),
    )

    assert out.unit_status == testing.BlockedStatus(
        "api_token_secret: the secret has no 'token' key"
    )
    assert graylog.requests == []


def test_the_last_broken_relation_leaves_no_requirer(ctx):
    relation = requirer()

    out = ctx.run(ctx.on.relation_broken(relation), state(relations=[relation]))

    assert out.unit_status == testing.ActiveStatus(f"{WHERE}; 0 requirer apps")


def test_a_sender_naming_its_cluster_gets_a_stream_per_cluster(ctx, graylog):
    port = free_port()
    prod = requirer(remote_app_data_extra={"cluster": "prod-eu"})
    staging = requirer("falco-staging", remote_app_data_extra={"cluster": "staging"})

    out = ctx.run(
        ctx.on.config_changed(), provisioning_state(graylog, port, relations=[prod, staging])
    )

    assert out.unit_status.name == "active"
    running = {s["title"] for s in graylog.streams.values() if not s["disabled"]}
    assert running == {
        "Default Stream",
        "Falco alerts: prod-eu/cos/falco-k8s",
        "Falco alerts: staging/cos/falco-staging",
    }


def test_a_bad_cluster_name_blocks_naming_the_relation_and_the_field(ctx, graylog):
    port = free_port()
    relation = requirer(remote_app_data_extra={"cluster": "prod eu/1"})

    out = ctx.run(ctx.on.config_changed(), provisioning_state(graylog, port, relations=[relation]))

    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith(
        f"gelf relation {relation.id} (falco-k8s): cluster: must be"
    )
    assert not any(s["title"].startswith("Falco alerts") for s in graylog.streams.values())
