"""Scenario tests for the ``gelf`` relation library, from both sides."""

import json
from typing import Any

import ops
import pytest
from ops import testing

from charms.falco_k8s.v0.gelf import (
    GelfEndpoint,
    GelfEndpointChangedEvent,
    GelfEndpointError,
    GelfEndpointProvider,
    GelfEndpointRemovedEvent,
    GelfEndpointRequirer,
    GelfSenderChangedEvent,
    GelfSenderTopology,
    check_cluster_name,
)

URL = "https://graylog.example:12201/gelf"
TOKEN = "s3cret-token-value"  # the auth header value; must never reach the logs
CERT = (
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2Fh\nZmFrZQ==\n-----END CERTIFICATE-----\n"
)
MODEL = testing.Model(name="observability", uuid="0b7c8a2e-6a43-4f44-9b3e-5d1b3c1f2a90")


class ProviderCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.gelf = GelfEndpointProvider(self)


class RequirerCharm(ops.CharmBase):
    """Wires the library the way falco-k8s does: any endpoint event reconciles."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.graylog = GelfEndpointRequirer(self, relation_name="graylog")
        framework.observe(self.graylog.on.endpoint_changed, self._reconcile)
        framework.observe(self.graylog.on.endpoint_removed, self._reconcile)

    def _reconcile(self, _: ops.EventBase):
        try:
            endpoints = self.graylog.endpoints()
        except GelfEndpointError as e:
            self.unit.status = ops.BlockedStatus(str(e))
        else:
            self.unit.status = ops.ActiveStatus(f"{len(endpoints)} endpoint(s)")


PROVIDER_META = {"name": "graylog-k8s", "provides": {"gelf": {"interface": "gelf"}}}
REQUIRER_META = {"name": "falco-k8s", "requires": {"graylog": {"interface": "gelf"}}}


def provider_ctx() -> testing.Context[ProviderCharm]:
    return testing.Context(ProviderCharm, meta=PROVIDER_META)


def requirer_ctx() -> testing.Context[RequirerCharm]:
    return testing.Context(RequirerCharm, meta=REQUIRER_META, app_name="falco")


def encode(**fields: Any) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in fields.items()}


def graylog_relation(data: dict[str, str] | None = None, **kwargs: Any) -> testing.Relation:
    return testing.Relation(
        "graylog", remote_app_name="graylog", remote_app_data=data or {}, **kwargs
    )


def logs(ctx: testing.Context[Any]) -> str:
    return "\n".join(line.message for line in ctx.juju_log)


def emitted(ctx: testing.Context[Any], kind: type[ops.EventBase]) -> list[Any]:
    return [e for e in ctx.emitted_events if isinstance(e, kind)]


# --- provider: publishing -------------------------------------------------------------


def test_provider_publishes_endpoint_to_every_relation():
    ctx = provider_ctx()
    rels = [testing.Relation("gelf", remote_app_name=name) for name in ("falco", "other")]
    with ctx(ctx.on.update_status(), testing.State(leader=True, relations=rels)) as mgr:
        mgr.charm.gelf.publish(URL, ca_cert=CERT, max_message_bytes=1024)
        out = mgr.run()
    for rel in rels:
        data = out.get_relation(rel.id).local_app_data
        assert json.loads(data["url"]) == URL
        assert json.loads(data["ca_cert"]) == CERT
        assert json.loads(data["max_message_bytes"]) == 1024
        assert json.loads(data["auth_header_name"]) is None
        assert json.loads(data["auth_secret_id"]) is None


def test_provider_publish_to_one_relation_only():
    ctx = provider_ctx()
    one, two = testing.Relation("gelf"), testing.Relation("gelf")
    with ctx(ctx.on.update_status(), testing.State(leader=True, relations=[one, two])) as mgr:
        mgr.charm.gelf.publish(URL, relation=mgr.charm.model.get_relation("gelf", two.id))
        out = mgr.run()
    assert out.get_relation(one.id).local_app_data == {}
    assert json.loads(out.get_relation(two.id).local_app_data["max_message_bytes"]) == 65536


@pytest.mark.parametrize("by_label", [False, True])
def test_provider_grants_auth_secret_and_stores_its_id(by_label: bool):
    ctx = provider_ctx()
    rel = testing.Relation("gelf", remote_app_name="falco")
    secret = testing.Secret({"value": TOKEN}, owner="app", label="gelf-auth")
    state = testing.State(leader=True, relations=[rel], secrets=[secret])
    with ctx(ctx.on.update_status(), state) as mgr:
        model = mgr.charm.model
        handle = (
            model.get_secret(label="gelf-auth") if by_label else model.get_secret(id=secret.id)
        )
        mgr.charm.gelf.publish(URL, auth_header_name="Authorization", auth_secret=handle)
        out = mgr.run()
    data = out.get_relation(rel.id).local_app_data
    assert json.loads(data["auth_header_name"]) == "Authorization"
    assert json.loads(data["auth_secret_id"]) == secret.id
    assert out.get_secret(id=secret.id).remote_grants == {rel.id: {"falco"}}
    assert TOKEN not in json.dumps(data)


def test_provider_revokes_a_replaced_secret_but_keeps_the_current_one():
    ctx = provider_ctx()
    old = testing.Secret({"value": "old"}, owner="app")
    rel = testing.Relation(
        "gelf",
        remote_app_name="falco",
        local_app_data=encode(url=URL, auth_header_name="X-Token", auth_secret_id=old.id),
    )
    old = testing.Secret(
        {"value": "old"}, id=old.id, owner="app", remote_grants={rel.id: ["falco"]}
    )
    new = testing.Secret({"value": "new"}, owner="app")
    state = testing.State(leader=True, relations=[rel], secrets=[old, new])
    with ctx(ctx.on.update_status(), state) as mgr:
        mgr.charm.gelf.publish(
            URL, auth_header_name="X-Token", auth_secret=mgr.charm.model.get_secret(id=new.id)
        )
        out = mgr.run()
    assert out.get_secret(id=old.id).remote_grants == {}
    assert out.get_secret(id=new.id).remote_grants == {rel.id: {"falco"}}

    # Republishing the same secret leaves its grant in place.
    with ctx(ctx.on.update_status(), out) as mgr:
        mgr.charm.gelf.publish(
            URL, auth_header_name="X-Token", auth_secret=mgr.charm.model.get_secret(id=new.id)
        )
        again = mgr.run()
    assert again.get_secret(id=new.id).remote_grants == {rel.id: {"falco"}}

    # Dropping auth revokes the last secret and clears both keys.
    with ctx(ctx.on.update_status(), again) as mgr:
        mgr.charm.gelf.publish(URL)
        cleared = mgr.run()
    assert cleared.get_secret(id=new.id).remote_grants == {}
    data = cleared.get_relation(rel.id).local_app_data
    assert json.loads(data["auth_secret_id"]) is None
    assert json.loads(data["auth_header_name"]) is None


def test_provider_tolerates_a_previous_secret_that_no_longer_exists():
    ctx = provider_ctx()
    rel = testing.Relation(
        "gelf", local_app_data=encode(url=URL, auth_header_name="X", auth_secret_id="secret:gone")
    )
    with ctx(ctx.on.update_status(), testing.State(leader=True, relations=[rel])) as mgr:
        mgr.charm.gelf.publish(URL)
        out = mgr.run()
    assert json.loads(out.get_relation(rel.id).local_app_data["auth_secret_id"]) is None
    assert "could not revoke the previous auth secret" in logs(ctx)


def test_provider_non_leader_writes_and_grants_nothing():
    ctx = provider_ctx()
    rel = testing.Relation("gelf", remote_app_name="falco")
    secret = testing.Secret({"value": TOKEN}, owner="app")
    with ctx(ctx.on.update_status(), testing.State(relations=[rel], secrets=[secret])) as mgr:
        handle = mgr.charm.model.get_secret(id=secret.id)
        mgr.charm.gelf.publish(URL, auth_header_name="Authorization", auth_secret=handle)
        out = mgr.run()
    assert out.get_relation(rel.id).local_app_data == {}
    assert out.get_secret(id=secret.id).remote_grants == {}


def test_provider_validates_even_without_relations():
    ctx = provider_ctx()
    with ctx(ctx.on.update_status(), testing.State(leader=True)) as mgr:
        with pytest.raises(GelfEndpointError, match="url: must be an http"):
            mgr.charm.gelf.publish("graylog:12201/gelf")
        mgr.charm.gelf.publish(URL)  # valid, and nowhere to write it yet
        mgr.run()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"url": "graylog:12201/gelf"}, "url: must be an http(s) URL"),
        ({"url": URL, "max_message_bytes": 0}, "max_message_bytes: Input should be greater"),
        (
            {"url": URL, "auth_header_name": "X-Token"},
            "auth_header_name and auth_secret_id must be set together",
        ),
        ({"url": URL, "ca_cert": "not a cert"}, "ca_cert: must be one or more PEM"),
        # U+2028 is whitespace to Python's regex engine, not to OpenSSL.
        ({"url": URL, "ca_cert": CERT.replace("\n", "\u2028")}, "ca_cert: must be one or more"),
    ],
)
def test_provider_rejects_invalid_arguments_before_writing(kwargs: dict[str, Any], problem: str):
    ctx = provider_ctx()
    rel = testing.Relation("gelf")
    with ctx(ctx.on.update_status(), testing.State(leader=True, relations=[rel])) as mgr:
        with pytest.raises(GelfEndpointError, match="cannot publish GELF endpoint") as info:
            mgr.charm.gelf.publish(**kwargs)
        out = mgr.run()
    assert problem in str(info.value)
    assert out.get_relation(rel.id).local_app_data == {}


# --- provider: reading senders ---------------------------------------------------------

TOPOLOGY = {
    "model": "security",
    "model_uuid": "5b0c3a47-1d5e-4c8e-9a52-0b5cf0f3b7e1",
    "application": "falco",
    "charm": "falco-k8s",
}


def test_provider_reads_valid_sender_topologies_and_skips_the_rest():
    ctx = provider_ctx()
    good = testing.Relation("gelf", remote_app_name="falco", remote_app_data=encode(**TOPOLOGY))
    empty = testing.Relation("gelf", remote_app_name="quiet")
    partial = testing.Relation(
        "gelf", remote_app_name="partial", remote_app_data=encode(model="security")
    )
    bad_uuid = testing.Relation(
        "gelf", remote_app_name="weird", remote_app_data=encode(**{**TOPOLOGY, "model_uuid": "x"})
    )
    state = testing.State(relations=[good, empty, partial, bad_uuid])
    with ctx(ctx.on.update_status(), state) as mgr:
        senders = mgr.charm.gelf.senders()
        mgr.run()
    assert senders == [GelfSenderTopology(**TOPOLOGY)]
    warnings = [line.message for line in ctx.juju_log if line.level == "WARNING"]
    assert any(f"gelf relation {partial.id} (partial)" in m for m in warnings)
    assert any(f"gelf relation {bad_uuid.id} (weird)" in m and "model_uuid" in m for m in warnings)
    assert not any("(quiet)" in m for m in warnings)


def test_provider_emits_sender_changed_only_for_a_valid_topology():
    ctx = provider_ctx()
    good = testing.Relation("gelf", remote_app_data=encode(**TOPOLOGY))
    ctx.run(ctx.on.relation_changed(good, remote_unit=0), testing.State(relations=[good]))
    (event,) = emitted(ctx, GelfSenderChangedEvent)
    assert event.relation.id == good.id

    ctx = provider_ctx()
    partial = testing.Relation("gelf", remote_app_data=encode(model="security"))
    ctx.run(ctx.on.relation_changed(partial, remote_unit=0), testing.State(relations=[partial]))
    assert emitted(ctx, GelfSenderChangedEvent) == []


# --- requirer: publishing the topology ------------------------------------------------


def expected_topology() -> dict[str, Any]:
    return {
        "model": MODEL.name,
        "model_uuid": MODEL.uuid,
        "application": "falco",
        "charm": "falco-k8s",
    }


@pytest.mark.parametrize("event", ["relation_created", "relation_joined"])
def test_requirer_leader_publishes_topology_on_relation_events(event: str):
    ctx = requirer_ctx()
    rel = graylog_relation()
    out = ctx.run(
        getattr(ctx.on, event)(rel), testing.State(leader=True, relations=[rel], model=MODEL)
    )
    data = out.get_relation(rel.id).local_app_data
    assert {key: json.loads(value) for key, value in data.items()} == expected_topology()


def test_requirer_leader_publishes_topology_everywhere_when_elected():
    ctx = requirer_ctx()
    rels = [graylog_relation(), graylog_relation()]
    out = ctx.run(ctx.on.leader_elected(), testing.State(leader=True, relations=rels, model=MODEL))
    for rel in rels:
        data = out.get_relation(rel.id).local_app_data
        assert {key: json.loads(value) for key, value in data.items()} == expected_topology()


def test_requirer_non_leader_does_not_write_topology():
    ctx = requirer_ctx()
    rel = graylog_relation()
    out = ctx.run(ctx.on.relation_created(rel), testing.State(relations=[rel]))
    assert out.get_relation(rel.id).local_app_data == {}


# --- requirer: reading endpoints -------------------------------------------------------


def test_requirer_resolves_endpoint_with_latest_secret_revision():
    ctx = requirer_ctx()
    secret = testing.Secret({"value": "stale"}, latest_content={"value": TOKEN})
    rel = graylog_relation(
        encode(
            url=URL,
            auth_header_name="Authorization",
            auth_secret_id=secret.id,
            ca_cert=CERT + CERT,
            max_message_bytes=8192,
        )
    )
    out = ctx.run(
        ctx.on.relation_changed(rel, remote_unit=0),
        testing.State(relations=[rel], secrets=[secret]),
    )
    assert out.unit_status == testing.ActiveStatus("1 endpoint(s)")
    (event,) = emitted(ctx, GelfEndpointChangedEvent)
    assert event.relation.id == rel.id

    with ctx(ctx.on.update_status(), out) as mgr:
        (endpoint,) = mgr.charm.graylog.endpoints()
        mgr.run()
    assert endpoint == GelfEndpoint(
        url=URL,
        headers={"Authorization": TOKEN},
        ca_cert=CERT + CERT,
        max_message_bytes=8192,
        relation_id=rel.id,
        app_name="graylog",
    )
    assert TOKEN not in repr(endpoint)
    assert TOKEN not in logs(ctx)


def test_requirer_accepts_minimal_and_hand_written_data():
    ctx = requirer_ctx()
    minimal = graylog_relation(encode(url=URL))
    raw = graylog_relation({"url": "http://10.1.2.3:12201/gelf", "max_message_bytes": "512"})
    with ctx(ctx.on.update_status(), testing.State(relations=[minimal, raw])) as mgr:
        endpoints = mgr.charm.graylog.endpoints()
        mgr.run()
    assert [(e.url, e.headers, e.ca_cert, e.max_message_bytes) for e in endpoints] == [
        (URL, {}, None, 65536),
        ("http://10.1.2.3:12201/gelf", {}, None, 512),
    ]


@pytest.mark.parametrize("data", [{}, encode(max_message_bytes=1024)], ids=["empty", "partial"])
def test_requirer_skips_provider_that_is_not_ready(data: dict[str, str]):
    ctx = requirer_ctx()
    rel = graylog_relation(data)
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), testing.State(relations=[rel]))
    with ctx(ctx.on.update_status(), out) as mgr:
        assert mgr.charm.graylog.endpoints() == []
        mgr.run()
    assert "GELF endpoint not published yet" in logs(ctx)
    # Either way the sender is told, and reconciles to zero endpoints: a provider that emptied
    # its databag must not keep receiving.
    assert len(emitted(ctx, GelfEndpointChangedEvent)) == 1


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (encode(url="ftp://graylog/gelf"), "url: must be an http(s) URL"),
        (encode(url="https://graylog:12201"), "url: must include the input path"),
        (encode(url="https://admin:pw@graylog/gelf"), "url: must not embed credentials"),
        (encode(url="https://graylog:http/gelf"), "url: must be an http(s) URL with a valid"),
        (encode(url="https://gray log/gelf"), "url: must be an http(s) URL without whitespace"),
        (encode(url=12201), "url: Input should be a valid string"),
        (encode(url=URL, max_message_bytes="big"), "max_message_bytes: Input should be a valid"),
        ({**encode(url=URL), "max_message_bytes": "1e3"}, "max_message_bytes: Input should be"),
        (encode(url=URL, max_message_bytes=-1), "max_message_bytes: Input should be greater"),
        (
            encode(url=URL, auth_header_name="X-Token"),
            "auth_header_name and auth_secret_id must be set together",
        ),
        (
            encode(url=URL, auth_secret_id="secret:abc"),
            "auth_header_name and auth_secret_id must be set together",
        ),
        (
            encode(url=URL, auth_header_name="Bad Header", auth_secret_id="secret:abc"),
            "auth_header_name: must be an HTTP header name",
        ),
        (
            encode(url=URL, auth_header_name="X", auth_secret_id="secret: abc"),
            "auth_secret_id: must be a Juju secret ID",
        ),
        (encode(url=URL, ca_cert="-----BEGIN KEY-----"), "ca_cert: must be one or more PEM"),
        (
            encode(url=URL, ca_cert="-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----"),
            "ca_cert: must be one or more PEM",
        ),
        (
            encode(url=URL, auth_header_name="X", auth_secret_id="secret:missing"),
            "auth_secret_id: secret cannot be read",
        ),
    ],
)
def test_requirer_reports_invalid_data_naming_the_relation(data: dict[str, str], problem: str):
    ctx = requirer_ctx()
    rel = graylog_relation(data)
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), testing.State(relations=[rel]))
    prefix = f"graylog relation {rel.id} (graylog): "
    assert out.unit_status == testing.BlockedStatus(out.unit_status.message)
    assert out.unit_status.message.startswith(prefix + problem)
    errors = [line.message for line in ctx.juju_log if line.level == "ERROR"]
    assert any(prefix + problem in m for m in errors)

    with ctx(ctx.on.update_status(), out) as mgr:
        with pytest.raises(GelfEndpointError, match=f"^graylog relation {rel.id} "):
            mgr.charm.graylog.endpoints()
        mgr.run()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"token": TOKEN}, "auth secret has no 'value' key"),
        (
            {"value": TOKEN + "\r\nX-Injected: 1"},
            "auth secret value is not a valid HTTP header value",
        ),
    ],
)
def test_requirer_rejects_unusable_secret_without_leaking_it(
    content: dict[str, str], problem: str
):
    ctx = requirer_ctx()
    secret = testing.Secret(content)
    rel = graylog_relation(encode(url=URL, auth_header_name="X-Token", auth_secret_id=secret.id))
    out = ctx.run(
        ctx.on.relation_changed(rel, remote_unit=0),
        testing.State(relations=[rel], secrets=[secret]),
    )
    assert out.unit_status == testing.BlockedStatus(
        f"graylog relation {rel.id} (graylog): {problem}"
    )
    assert TOKEN not in logs(ctx)


# --- requirer: change notifications --------------------------------------------------


def test_requirer_emits_endpoint_changed_when_its_auth_secret_changes():
    ctx = requirer_ctx()
    secret = testing.Secret({"value": "old"}, latest_content={"value": TOKEN})
    unrelated = testing.Secret({"value": "other"})
    other = graylog_relation(encode(url=URL))
    rel = graylog_relation(encode(url=URL, auth_header_name="X-Token", auth_secret_id=secret.id))
    state = testing.State(relations=[other, rel], secrets=[secret, unrelated])

    out = ctx.run(ctx.on.secret_changed(secret), state)
    (event,) = emitted(ctx, GelfEndpointChangedEvent)
    assert event.relation.id == rel.id
    assert out.unit_status == testing.ActiveStatus("2 endpoint(s)")
    assert TOKEN not in logs(ctx)

    ctx = requirer_ctx()
    ctx.run(ctx.on.secret_changed(unrelated), state)
    assert emitted(ctx, GelfEndpointChangedEvent) == []


def test_requirer_emits_endpoint_removed_and_drops_the_broken_relation():
    ctx = requirer_ctx()
    staying = graylog_relation(encode(url=URL))
    leaving = graylog_relation(encode(url="http://old:12201/gelf"))
    state = testing.State(relations=[staying, leaving])
    out = ctx.run(ctx.on.relation_broken(leaving), state)
    (event,) = emitted(ctx, GelfEndpointRemovedEvent)
    assert event.relation.id == leaving.id
    assert emitted(ctx, GelfEndpointChangedEvent) == []
    assert out.unit_status == testing.ActiveStatus("1 endpoint(s)")


# --- the optional cluster name (LIBPATCH 3) ---------------------------------------------


class ClusterRequirerCharm(RequirerCharm):
    """A sender whose alerts carry a cluster name, as falco-k8s's `cluster_name` option."""

    cluster: str | None = "prod-eu.1"

    def __init__(self, framework: ops.Framework):
        ops.CharmBase.__init__(self, framework)
        self.graylog = GelfEndpointRequirer(self, relation_name="graylog", cluster=self.cluster)


def test_requirer_publishes_its_cluster_name_and_the_provider_reads_it():
    ctx = testing.Context(ClusterRequirerCharm, meta=REQUIRER_META, app_name="falco")
    rel = graylog_relation()
    out = ctx.run(
        ctx.on.relation_joined(rel), testing.State(leader=True, relations=[rel], model=MODEL)
    )
    data = dict(out.get_relation(rel.id).local_app_data)
    assert {key: json.loads(value) for key, value in data.items()} == {
        **expected_topology(),
        "cluster": "prod-eu.1",
    }

    provider = provider_ctx()
    gelf = testing.Relation("gelf", remote_app_name="falco", remote_app_data=data)
    with provider(provider.on.update_status(), testing.State(relations=[gelf])) as mgr:
        (sender,) = mgr.charm.gelf.senders()
        mgr.run()
    assert sender.cluster == "prod-eu.1"


def test_requirer_republishes_its_cluster_name_when_the_config_changes():
    ctx = testing.Context(ClusterRequirerCharm, meta=REQUIRER_META, app_name="falco")
    rel = graylog_relation(local_app_data={**encode(**expected_topology()), "cluster": '"old"'})
    out = ctx.run(
        ctx.on.config_changed(), testing.State(leader=True, relations=[rel], model=MODEL)
    )
    assert json.loads(out.get_relation(rel.id).local_app_data["cluster"]) == "prod-eu.1"


def test_requirer_without_a_cluster_name_writes_no_cluster_key():
    ctx = requirer_ctx()
    rel = graylog_relation(local_app_data=encode(cluster="old-name"))
    out = ctx.run(
        ctx.on.leader_elected(), testing.State(leader=True, relations=[rel], model=MODEL)
    )
    assert "cluster" not in out.get_relation(rel.id).local_app_data


@pytest.mark.parametrize("bad", ["", "prod eu", "a/b", "-lead", "x" * 101, "ünï"])
def test_an_invalid_cluster_name_is_left_out_and_logged_never_a_hook_error(bad: str):
    charm = type("BadCluster", (ClusterRequirerCharm,), {"cluster": bad})
    ctx = testing.Context(charm, meta=REQUIRER_META, app_name="falco")
    rel = graylog_relation()
    out = ctx.run(
        ctx.on.relation_joined(rel), testing.State(leader=True, relations=[rel], model=MODEL)
    )
    data = out.get_relation(rel.id).local_app_data
    assert "cluster" not in data
    assert json.loads(data["application"]) == "falco"
    assert any("not publishing the cluster name" in line.message for line in ctx.juju_log)
    with pytest.raises(ValueError, match="must be 1-100 letters"):
        check_cluster_name(bad)


def test_provider_load_sender_names_the_relation_and_field_of_a_bad_cluster():
    ctx = provider_ctx()
    bad = testing.Relation(
        "gelf", remote_app_name="falco", remote_app_data=encode(**TOPOLOGY, cluster="a b")
    )
    with ctx(ctx.on.update_status(), testing.State(relations=[bad])) as mgr:
        relation = mgr.charm.model.get_relation("gelf", bad.id)
        assert relation is not None
        with pytest.raises(GelfEndpointError) as error:
            mgr.charm.gelf.load_sender(relation)
        assert mgr.charm.gelf.senders() == []  # the lenient reader skips it, as before
        mgr.run()
    assert str(error.value).startswith(f"gelf relation {bad.id} (falco): cluster: must be 1-100")
    assert "a b" not in str(error.value)


def test_a_value_nested_past_the_json_parsers_depth_is_reported_not_raised():
    ctx = provider_ctx()
    deep = testing.Relation(
        "gelf",
        remote_app_name="falco",
        remote_app_data={**encode(**TOPOLOGY), "model_uuid": "[" * 5000},
    )
    with ctx(ctx.on.update_status(), testing.State(relations=[deep])) as mgr:
        relation = mgr.charm.model.get_relation("gelf", deep.id)
        assert relation is not None
        with pytest.raises(GelfEndpointError, match=r"model_uuid: must be a UUID$"):
            mgr.charm.gelf.load_sender(relation)
        mgr.run()
