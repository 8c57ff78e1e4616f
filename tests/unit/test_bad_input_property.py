"""Any value of any option or relation field the charm reads, through the whole charm (Scenario).

A unit runs with every relation it reads (and good data in each); one input at a time is then
set to a hostile value and the hook that brings it runs, followed by an update-status. Whatever
the value: no hook error, no hook over 5 s (a hang guard, not a speed measurement: speed is in
benchmarks/large_option_hooks.py), a status of at most 120 printable characters, and either the
value is taken (Active) or the unit is Blocked naming the option or relation, with Falco's
files, the forwarder's and the intake's config, the Pebble layers and the cluster objects as
they were. The cluster is the stand-in API (fakes/fake_kube_api.py), put back before each
example; the cluster side against the real kube-apiserver is in tests/unit/apiserver/.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from charm_pod import unit_state
from fakes.fake_kube_api import FakeApiServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ops import testing
from tls_ca import TestCa, provider_databag, requested_csrs

from falco._service import FalcoService
from report import STATUS_MAX_CHARS, UNPRINTABLE
from sinks._delivery_status import DROP_HISTORY_KEY
from webhook._apiserver_file import BASELINE_KEY, HANDED_OUT_KEY
from webhook._audit_policy import MAX_DEPTH
from webhook._credentials import CHANGED_KEY
from webhook._service import AuditWebhook

ROOT = Path(__file__).resolve().parents[2]

HOOK_SECONDS_MAX = 5.0
# A value taken can still ask the admin for something: a new address or CA (or none) for the
# kube-apiserver's webhook file. That is the value's effect, not its refusal.
TAKEN_BUT_ASKS = "kube-apiserver webhook file must be replaced"
NS = "audit"
TOKEN = "graylog-input-token-5f2c"

GOOD_CONFIG: dict[str, str | int] = {"http_output": "http://alerts.example.com:8080/falco"}
# Every option, with Juju's type for it (Juju refuses a value of another type itself).
OPTIONS: dict[str, type] = {
    "http_output": str,
    "minimum_priority": str,
    "custom_rules": str,
    "disabled_rules": str,
    "alert_log_retention_mb": int,
    "webhook_service_type": str,
    "webhook_node_port": int,
    "webhook_cluster_ip": str,
    "webhook_allowed_cidrs": str,
    "audit_policy": str,
    "cluster_name": str,
    "alert_dedup_window": int,
}


@dataclass(frozen=True)
class Field:
    """A relation datum the charm reads: the relation, whose databag, and the key."""

    endpoint: str
    databag: str
    """"app" (the remote application), "unit" (remote unit 0), "local" (this unit), or
    "local-app" (this application's, as the leader wrote it)."""
    key: str


FIELDS = [
    *(Field("graylog", "app", key) for key in ("url", "auth_header_name", "auth_secret_id")),
    *(Field("graylog", "app", key) for key in ("ca_cert", "max_message_bytes")),
    Field("http-endpoint", "app", "url"),
    Field("http-endpoint", "app", "ca_cert"),
    Field("send-loki-logs", "unit", "endpoint"),
    Field("logging", "unit", "endpoint"),
    Field("send-otlp", "app", "endpoints"),
    *(Field("certificates", "app", key) for key in ("certificates", "capabilities")),
    Field("certificates", "app", "request_errors"),
    Field("falco-peers", "unit", HANDED_OUT_KEY),
    *(
        Field("falco-peers", "local", key)
        for key in (
            FalcoService.LAST_GOOD_KEY,
            FalcoService.CHECKED_KEY,
            FalcoService.UNCONFIRMED_KEY,
            AuditWebhook.CHECKED_POLICY_KEY,
            DROP_HISTORY_KEY,
        )
    ),
    *(Field("falco-peers", "local-app", key) for key in (BASELINE_KEY, CHANGED_KEY)),
    # Not fed: the leader's webhook-credentials-id, a Juju secret ID only the leader writes; one
    # that does not resolve leaves the unit Waiting for the credentials, not Blocked.
]


def test_every_option_and_every_relation_the_charm_reads_is_fed():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())["options"]
    metadata = yaml.safe_load((ROOT / "metadata.yaml").read_text())

    assert {name: OPTIONS.get(name) for name in config} == {
        name: int if option["type"] == "int" else str for name, option in config.items()
    }
    assert {*metadata["requires"], *metadata["peers"]} <= {field.endpoint for field in FIELDS}


# -- hostile values ----------------------------------------------------------------------------

LAUGHS = (
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nmetadata:\n  a0: &a0 [lol]\n"
    + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
    + "rules: [{level: None}]\n"
)
# Balanced nesting PyYAML builds recursively (libyaml itself stops at 1000 levels).
DEEP_POLICY = (
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nmetadata: {a: "
    + "[" * 900
    + "]" * 900
    + "}\nrules: [{level: None}]\n"
)
SPECIAL = [
    DEEP_POLICY,
    "",
    "*",
    "[" * 100_000,  # DEEP
    "{" * 100_000,
    "- " * 5_000,
    LAUGHS,
    "x" * (1024 * 1024 + 1),
    ",".join(f"Rule {n}" for n in range(400_000)),
    "http://alice:pa/ss-s3cret@alerts.example.com:99999/",
    "http://alerts.example.com:0/",
    "https://alerts.example.com/" + "a" * 1024 * 1024,
    "\x00\x1b[2J\u202e\u200b\n\r\t",
    "fe80::1%eth0",
    "0.0.0.0/0, ::/0",
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----",
    json.dumps([{"protocol": "http", "telemetries": ["logs"], "endpoint": "http://o:0"}]),
    json.dumps({"url": "ftp://loki/push"}),
    json.dumps("http://alice:p#s3cret@sk:8/"),
    json.dumps([{"certificate": "x", "ca": "y", "certificate_signing_request": "z"}]),
    json.dumps({"url": "http://x", "at": "never", "ca_sha256": None}),
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@dataclass(frozen=True)
class Special:
    """One of the `SPECIAL` values, by index: Hypothesis reports it without a 4 MB repr."""

    index: int

    @property
    def text(self) -> str:
        return SPECIAL[self.index]

    def __repr__(self) -> str:
        text = self.text
        return f"SPECIAL[{self.index}] ({len(text)} characters: {text[:40]!r})"


# A password (marked s3cret) with the characters a URL parser takes for delimiters.
PASSWORD_URLS = st.builds(
    "{}://alice:{}s3cret{}@{}:{}/{}".format,
    st.sampled_from(["http", "https", "ftp", "HTTP"]),
    st.text(alphabet="/?#@:%[] ", max_size=3),
    st.text(alphabet="/?#@:%[] ", max_size=3),
    st.sampled_from(["alerts.example.com", "10.0.0.1", "[fd00::1]", ""]),
    st.sampled_from(["0", "80", "99999", "x"]),
    st.text(alphabet="ab/?#@", max_size=5),
)
TEXT = st.one_of(
    st.builds(Special, st.integers(0, len(SPECIAL) - 1)),
    PASSWORD_URLS,
    PASSWORD_URLS.map(json.dumps),
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    JSON_VALUES.map(json.dumps),
    st.from_regex(r"(https?|ftp)://[a-z:@/?#%0-9.\[\]]{0,40}", fullmatch=True).map(json.dumps),
)
INTEGERS = st.one_of(st.integers(), st.sampled_from([0, -1, 30000, 32767, 65536, 2**63 - 1]))
Hostile = str | int | Special


def inputs() -> st.SearchStrategy[tuple[str | Field, Hostile]]:
    """One input point and a value for it."""
    options = [
        st.tuples(st.just(name), INTEGERS if kind is int else TEXT)
        for name, kind in OPTIONS.items()
    ]
    fields = [st.tuples(st.just(field), TEXT) for field in FIELDS]
    return st.one_of(*options, *fields)


def special(text: str) -> Special:
    """The explicit example of a `SPECIAL` value."""
    return Special(SPECIAL.index(text))


# -- the unit ----------------------------------------------------------------------------------


class Unit:
    """A converged unit with every relation, and what it must keep when it refuses a value.

    Not a dataclass: Hypothesis would print every field of it with a failing example.
    """

    def __init__(
        self, ctx: testing.Context[Any], state: testing.State, kube_api: FakeApiServer, tmp: Path
    ):
        self.ctx, self.state, self.kube_api = ctx, state, kube_api
        self.falco_fs = Path(state.get_container("falco").mounts["etc"].source).parent
        self.forwarder_fs = Path(state.get_container("forwarder").mounts["config"].source).parent
        self.snapshot = tmp / "converged"
        shutil.copytree(self.falco_fs, self.snapshot / "falco", symlinks=True)
        shutil.copytree(self.forwarder_fs, self.snapshot / "forwarder", symlinks=True)
        self.objects = copy.deepcopy(kube_api.objects)

    def __repr__(self) -> str:
        return "Unit(converged, every relation)"

    def restore(self) -> None:
        """Put the files and the cluster back as the converged unit left them."""
        for name, live in (("falco", self.falco_fs), ("forwarder", self.forwarder_fs)):
            shutil.rmtree(live)
            shutil.copytree(self.snapshot / name, live, symlinks=True)
        self.kube_api.objects = copy.deepcopy(self.objects)
        self.kube_api.requests.clear()

    def kept(self, out: testing.State) -> dict[str, Any]:
        """Everything a refused value must leave as it was."""
        return {
            "falco files": _tree(self.falco_fs / "etc-falco"),
            "forwarder config": _tree(self.forwarder_fs / "etc"),
            "intake config": _tree(self.forwarder_fs / "intake-etc"),
            "layers": {c.name: c.layers for c in out.containers},
            "cluster": self.kube_api.objects,
        }


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _relations(secret: testing.Secret) -> set[Any]:
    def app(endpoint: str, remote: str, data: dict[str, Any]) -> testing.Relation:
        return testing.Relation(
            endpoint,
            remote_app_name=remote,
            remote_app_data={k: json.dumps(v) for k, v in data.items()},
        )

    def loki(endpoint: str) -> testing.Relation:
        url = "http://loki-0.loki-endpoints.cos.svc.cluster.local:3100/loki/api/v1/push"
        return testing.Relation(
            endpoint,
            remote_app_name="loki",
            remote_units_data={0: {"endpoint": json.dumps({"url": url})}},
        )

    return {
        testing.PeerRelation("falco-peers", peers_data={1: {}}),
        testing.Relation("certificates", remote_app_name="self-signed-certificates"),
        app(
            "graylog",
            "graylog",
            {
                "url": "https://graylog.example.com:12201/gelf",
                "auth_header_name": "Authorization",
                "auth_secret_id": secret.id,
            },
        ),
        app("http-endpoint", "falcosidekick-k8s", {"url": "http://falcosidekick:2801/"}),
        app(
            "send-otlp",
            "otelcol",
            {
                "endpoints": [
                    {
                        "protocol": "http",
                        "endpoint": "http://otelcol:4318",
                        "telemetries": ["logs"],
                    }
                ]
            },
        ),
        loki("send-loki-logs"),
        loki("logging"),
        testing.Relation("metrics-endpoint", remote_app_name="prometheus"),
        testing.Relation("grafana-dashboard", remote_app_name="grafana"),
    }


@pytest.fixture
def unit(ctx, falco_fs: Path, kube_api: FakeApiServer, tmp_path: Path) -> Unit:
    """The unit after pebble-ready, its certificate issued and handed out, on good config."""
    secret = testing.Secret({"value": TOKEN})
    state = unit_state(falco_fs, NS, relations=_relations(secret))
    state = dataclasses.replace(state, config=GOOD_CONFIG, secrets={secret})
    state = ctx.run(ctx.on.pebble_ready(state.get_container("falco")), state)
    [certificates] = state.get_relations("certificates")
    assert isinstance(certificates, testing.Relation)
    ca = TestCa()
    csrs = requested_csrs(certificates.local_unit_data)
    issued = dataclasses.replace(
        certificates, remote_app_data=provider_databag({csr: (ca, ca.issue(csr)) for csr in csrs})
    )
    state = _with_relation(state, issued)
    state = ctx.run(ctx.on.relation_changed(issued, remote_unit=0), state)
    state = ctx.run(ctx.on.action("get-webhook-config"), state)  # the admin has the https file
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status.name == "active", state.unit_status
    return Unit(ctx, state, kube_api, tmp_path)


def _with_relation(state: testing.State, relation: Any) -> testing.State:
    others = {r for r in state.relations if r.id != relation.id}
    return dataclasses.replace(state, relations={*others, relation})


def _set(
    ctx, state: testing.State, point: str | Field, value: Hostile
) -> tuple[Any, testing.State]:
    """The hook that brings ``value`` in, and the state it runs on."""
    value = value.text if isinstance(value, Special) else value
    if isinstance(point, str):
        return ctx.on.config_changed(), dataclasses.replace(
            state, config={**GOOD_CONFIG, point: value}
        )
    [relation] = state.get_relations(point.endpoint)
    if point.databag == "app":
        assert isinstance(relation, testing.Relation)
        changed = dataclasses.replace(
            relation, remote_app_data={**relation.remote_app_data, point.key: value}
        )
    elif point.databag == "local":
        changed = dataclasses.replace(
            relation, local_unit_data={**relation.local_unit_data, point.key: value}
        )
        return ctx.on.update_status(), _with_relation(state, changed)
    elif point.databag == "local-app":
        changed = dataclasses.replace(
            relation, local_app_data={**relation.local_app_data, point.key: value}
        )
        return ctx.on.update_status(), _with_relation(state, changed)
    elif isinstance(relation, testing.PeerRelation):
        changed = dataclasses.replace(relation, peers_data={1: {point.key: value}})
    else:
        changed = dataclasses.replace(relation, remote_units_data={0: {point.key: value}})
    remote_unit = 1 if isinstance(relation, testing.PeerRelation) else 0
    return ctx.on.relation_changed(changed, remote_unit=remote_unit), _with_relation(
        state, changed
    )


def _carries_urls(point: str | Field) -> bool:
    """Whether ``point`` holds URLs, whose passwords no status may show."""
    return point == "http_output" or (
        isinstance(point, Field) and point.key in ("url", "endpoint", "endpoints")
    )


def _run(ctx, event: Any, state: testing.State) -> testing.State:
    started = time.perf_counter()
    out = ctx.run(event, state)  # a hook error raises here
    took = time.perf_counter() - started
    assert took < HOOK_SECONDS_MAX, f"the hook took {took:.1f} s"
    message = out.unit_status.message
    assert len(message) <= STATUS_MAX_CHARS, message
    assert not UNPRINTABLE.search(message), repr(message)
    assert TOKEN not in message
    return out


def _policy_the_apiserver_reads(kube_api: FakeApiServer) -> None:
    """The policy in the ConfigMap is one sigs.k8s.io/yaml takes: no alias, no deep nesting."""
    [data] = [obj["data"] for path, obj in kube_api.objects.items() if "/configmaps/" in path]
    depth = 0
    for event in yaml.parse(
        data["audit-policy.yaml"], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    ):
        assert not isinstance(event, yaml.AliasEvent), event
        depth += isinstance(event, yaml.CollectionStartEvent)
        depth -= isinstance(event, yaml.CollectionEndEvent)
        assert depth <= MAX_DEPTH


DEEP = "[" * 100_000  # JSON's parser recurses on each "[" until it meets the limit


def at_every_point(test: Any) -> Any:
    """An explicit example for each input point: nesting past any parser's depth, or 2**63-1."""
    for name, kind in OPTIONS.items():
        test = example((name, 2**63 - 1 if kind is int else special(DEEP)))(test)
    for field in FIELDS:
        test = example((field, special(DEEP)))(test)
    return test


# Derandomized, so CI sees the same inputs every run; each example costs about 0.8 s (two hooks),
# and the explicit ones already give every point its worst case.
@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(inputs())
@example(("audit_policy", special(DEEP_POLICY)))
@example(("custom_rules", special(DEEP_POLICY)))
@example(("audit_policy", special(LAUGHS)))
@example(("disabled_rules", special(",".join(f"Rule {n}" for n in range(400_000)))))
@example(("disabled_rules", special("\x00\x1b[2J\u202e\u200b\n\r\t")))
@example(("http_output", special("http://alice:pa/ss-s3cret@alerts.example.com:99999/")))
@example(
    (Field("http-endpoint", "app", "url"), special(json.dumps("http://alice:p#s3cret@sk:8/")))
)
@example((Field("certificates", "app", "certificates"), Special(len(SPECIAL) - 2)))
@example(("webhook_cluster_ip", special("fe80::1%eth0")))
@example(("webhook_allowed_cidrs", special("0.0.0.0/0, ::/0")))
@at_every_point
def test_no_input_fails_a_hook_or_leaves_the_unit_worse(unit: Unit, point_value):
    point, value = point_value
    ctx = unit.ctx
    unit.restore()
    before = unit.kept(unit.state)
    event, state = _set(ctx, unit.state, point, value)

    for hook in (event, ctx.on.update_status()):
        state = _run(ctx, hook, state)
        _policy_the_apiserver_reads(unit.kube_api)
        status = state.unit_status
        if _carries_urls(point):
            assert "s3cret" not in status.message
        assert status.name in ("active", "blocked"), status
        if status.name == "blocked" and not status.message.startswith(TAKEN_BUT_ASKS):
            named = point if isinstance(point, str) else point.endpoint
            assert named in status.message, (point, status.message)
            assert unit.kept(state) == before, point
