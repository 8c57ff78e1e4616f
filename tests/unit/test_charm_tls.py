"""The audit webhook's TLS in Scenario: a real test CA signs the charm's own CSR.

TLS terminates at the audit intake in the forwarder container; Falco's k8saudit stays plain
HTTP on loopback, so no certificate ever touches Falco. The cluster side talks HTTP to the fake
API on 127.0.0.1; the containers' filesystems are real directories, so modes and contents of
what the charm pushes are read back from disk.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from charm_pod import DRY_RUN_PREFIX, Calls, falco_container, peers, pod
from fakes.fake_kube_api import FakeApiServer
from ops import testing
from tls_ca import TestCa, csr_sans, provider_databag, requested_csrs

from constants import INTAKE_CONFIG, INTAKE_PEM
from webhook._apiserver_file import HANDED_OUT_KEY
from webhook._tls import WebhookIdentity
from workload import CommandResult, Workload

NS = "audit"
SERVICE_NAME = "falco-k8s-audit-webhook"
SERVICE = f"/api/v1/namespaces/{NS}/services/{SERVICE_NAME}"
SECRET = f"/api/v1/namespaces/{NS}/secrets/{SERVICE_NAME}"
DNS_NAMES = {
    SERVICE_NAME,
    f"{SERVICE_NAME}.{NS}",
    f"{SERVICE_NAME}.{NS}.svc",
    f"{SERVICE_NAME}.{NS}.svc.cluster.local",
}
HTTPS_URL = "https://10.152.183.77:9765/k8s-audit"
OWN_CA_NOTE = "TLS by the charm's CA until the provider's certificate"


def _state(fs: Path, *relations: Any, **config: Any) -> testing.State:
    if not any(r.endpoint == "falco-peers" for r in relations):
        relations = (*relations, peers())
    return testing.State(
        config=config,
        containers=pod(falco_container(fs)),
        leader=True,
        model=testing.Model(name=NS),
        relations=set(relations),
    )


def _certificates() -> testing.Relation:
    return testing.Relation("certificates", remote_app_name="self-signed-certificates")


def _relate(ctx, fs: Path, *extra: Any, **config: Any) -> testing.State:
    """Deploy with the certificates relation: the charm requests its certificate."""
    relation = _certificates()
    return ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0), _state(fs, relation, *extra, **config)
    )


def _issue(ctx, state: testing.State, ca: TestCa) -> testing.State:
    """The provider signs every CSR the unit requested and the charm sees its answer."""
    relation = state.get_relations("certificates")[0]
    csrs = requested_csrs(relation.local_unit_data)
    assert csrs, "the charm requested no certificate"
    answered = dataclasses.replace(
        relation, remote_app_data=provider_databag({csr: (ca, ca.issue(csr)) for csr in csrs})
    )
    return ctx.run(
        ctx.on.relation_changed(answered, remote_unit=0), _with_relation(state, answered)
    )


def _with_relation(state: testing.State, relation: Any) -> testing.State:
    others = {r for r in state.relations if r.endpoint != relation.endpoint}
    return dataclasses.replace(state, relations={*others, relation})


def _requested(state: testing.State) -> tuple[set[str], set[str]]:
    [csr] = requested_csrs(state.get_relations("certificates")[0].local_unit_data)
    return csr_sans(csr)


def _live(fs: Path, name: str) -> Path:
    return fs / "etc-falco" / name


def _intake(fs: Path, path: str) -> Path:
    """A file of the intake's in the forwarder container (mounted beside Falco's filesystem)."""
    return fs.parent / f"{fs.name}-forwarder" / "intake-etc" / Path(path).name


def _falco_files(fs: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (fs / "etc-falco").iterdir() if p.is_file()}


def _k8saudit(fs: Path) -> dict[str, Any]:
    config = yaml.safe_load(_live(fs, "falco.yaml").read_text())
    return next(p for p in config["plugins"] if p["name"] == "k8saudit")


def _cluster(kubeconfig: str) -> dict[str, str]:
    return yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]


def _secret_kubeconfig(kube_api: FakeApiServer) -> str:
    data = kube_api.objects[SECRET]["data"]["webhook-config.yaml"]
    return base64.b64decode(data).decode()


def _private_key(state: testing.State) -> str:
    [key] = [
        s.tracked_content["private-key"]
        for s in state.secrets
        if "private-key" in (s.tracked_content or {})
    ]
    return key


# -- what is requested --------------------------------------------------------------------------


def test_requests_the_cluster_ip_and_the_service_dns_names(ctx, falco_fs, kube_api):
    out = _relate(ctx, falco_fs)

    ips, names = _requested(out)
    assert ips == {"10.152.183.77"}
    assert names == DNS_NAMES


def test_node_port_also_requests_the_loopback_address(ctx, falco_fs, kube_api):
    out = _relate(ctx, falco_fs, webhook_service_type="NodePort", webhook_node_port=30765)

    assert _requested(out)[0] == {"10.152.183.77", "127.0.0.1"}


def test_a_fixed_cluster_ip_is_the_ip_requested(ctx, falco_fs, kube_api):
    out = _relate(ctx, falco_fs, webhook_cluster_ip="10.152.183.200")

    assert _requested(out)[0] == {"10.152.183.200"}


def test_a_new_cluster_ip_requests_a_new_certificate(ctx, falco_fs, kube_api):
    ca = TestCa()
    served = _issue(ctx, _relate(ctx, falco_fs), ca)
    # The admin deleted the Service to move it, as the charm's message tells them to.
    del kube_api.objects[SERVICE]
    moved = dataclasses.replace(served, config={"webhook_cluster_ip": "10.152.183.200"})

    out = ctx.run(ctx.on.config_changed(), moved)

    assert _requested(out)[0] == {"10.152.183.200"}
    assert out.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (its address changed):"
        " run get-webhook-config"
    )
    # Handed out before the provider answers, the file is right but the certificate is not.
    fetched = ctx.run(ctx.on.action("get-webhook-config"), out)
    assert fetched.unit_status == testing.ActiveStatus(
        "webhook certificate lacks 10.152.183.200; webhook https://10.152.183.200:9765/k8s-audit"
    )
    reissued = _issue(ctx, fetched, ca)
    assert reissued.unit_status == testing.ActiveStatus(
        "webhook https://10.152.183.200:9765/k8s-audit"
    )


def test_before_the_certificate_comes_the_charms_own_ca_serves(ctx, falco_fs, kube_api):
    out = _relate(ctx, falco_fs)

    assert _k8saudit(falco_fs)["open_params"] == "http://127.0.0.1:9766/k8s-audit"
    assert _ca_of(_secret_kubeconfig(kube_api)) == _own_ca(out)
    assert out.unit_status == testing.ActiveStatus(f"{OWN_CA_NOTE}; webhook {HTTPS_URL}")


def _own_ca(state: testing.State) -> str:
    [content] = [s.tracked_content for s in state.secrets if s.label == "webhook-credentials"]
    return content["ca-certificate"]


# -- a certificate is available -----------------------------------------------------------------


def test_the_intake_serves_the_certificate_from_one_private_pem_and_falco_is_untouched(
    ctx, falco_fs, kube_api
):
    ca = TestCa()
    related = _relate(ctx, falco_fs)
    falco_before = _falco_files(falco_fs)

    out = _issue(ctx, related, ca)

    pem = _intake(falco_fs, INTAKE_PEM)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    blocks = [line for line in pem.read_text().splitlines() if line.startswith("-----BEGIN")]
    assert blocks[0] == "-----BEGIN CERTIFICATE-----"  # the leaf first
    assert blocks[-1] == "-----BEGIN PRIVATE KEY-----"
    assert json.loads(_intake(falco_fs, INTAKE_CONFIG).read_text())["tls_pem"] == INTAKE_PEM
    assert _falco_files(falco_fs) == falco_before  # k8saudit stays plain HTTP on loopback
    assert out.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")


def test_kubeconfig_is_https_with_the_relations_ca(ctx, falco_fs, kube_api):
    ca = TestCa()
    _issue(ctx, _relate(ctx, falco_fs), ca)

    cluster = _cluster(_secret_kubeconfig(kube_api))
    assert cluster["server"] == HTTPS_URL
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == ca.pem
    assert not _live(falco_fs, "webhook-config.yaml").exists()  # it holds the token now


# -- rotation -------------------------------------------------------------------------------------


def test_renewal_reloads_the_intake_in_place_and_leaves_falco_alone(
    ctx, falco_fs, kube_api, calls: Calls
):
    ca = TestCa()
    served = _issue(ctx, _relate(ctx, falco_fs), ca)
    before = _intake(falco_fs, INTAKE_PEM).read_bytes()
    [first_csr] = requested_csrs(served.get_relations("certificates")[0].local_unit_data)
    calls.reset()

    # The library's renewal: the certificate's secret expires, a new CSR replaces the old one.
    renewing = ctx.run(ctx.on.secret_expired(_certificate_secret(served), revision=1), served)
    [second_csr] = requested_csrs(renewing.get_relations("certificates")[0].local_unit_data)
    assert second_csr != first_csr
    # A hook before the provider answers keeps the webhook on the certificate it has.
    waiting = ctx.run(ctx.on.update_status(), renewing)
    assert waiting.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")
    assert calls.signals == []

    renewed = _issue(ctx, waiting, ca)

    assert calls.restarted == []
    assert calls.started == []
    # One SIGHUP: the intake takes the new certificate for its next connection.
    assert calls.signals == [("SIGHUP", ("audit-intake",))]
    assert [p for p in calls.pushed if p.startswith("falco:")] == []
    assert _intake(falco_fs, INTAKE_PEM).read_bytes() != before
    assert renewed.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")


def _certificate_secret(state: testing.State) -> testing.Secret:
    """The secret where the library keeps the issued certificate, due at renewal time."""
    [secret] = [s for s in state.secrets if "-certificate-" in (s.label or "")]
    return secret


def test_unchanged_certificate_touches_nothing(ctx, falco_fs, kube_api, calls: Calls):
    served = _issue(ctx, _relate(ctx, falco_fs), TestCa())
    calls.reset()

    ctx.run(ctx.on.update_status(), served)

    assert calls.pushed == []
    assert calls.restarted == []
    assert calls.signals == []


def test_ca_change_asks_for_the_apiserver_file_until_get_webhook_config(ctx, falco_fs, kube_api):
    deployed = ctx.run(ctx.on.config_changed(), _state(falco_fs))
    assert deployed.unit_status.name == "active"  # the first file served is taken as in place
    old_ca, new_ca = TestCa("first CA"), TestCa("second CA")
    relation = _certificates()
    related = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0), _with_relation(deployed, relation)
    )

    served = _issue(ctx, related, old_ca)
    assert served.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (the TLS CA changed): run get-webhook-config"
    )
    fetched = ctx.run(ctx.on.action("get-webhook-config"), served)
    assert ctx.action_results is not None
    assert _ca_of(ctx.action_results["webhook-config"]) == old_ca.pem
    assert fetched.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")

    rotated = _issue(ctx, fetched, new_ca)

    assert rotated.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (the TLS CA changed): run get-webhook-config"
    )
    assert _ca_of(_secret_kubeconfig(kube_api)) == new_ca.pem
    refetched = ctx.run(ctx.on.action("get-webhook-config"), rotated)
    assert _ca_of(ctx.action_results["webhook-config"]) == new_ca.pem
    assert refetched.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")
    assert ctx.run(ctx.on.update_status(), refetched).unit_status == refetched.unit_status


def test_the_file_handed_out_on_another_unit_clears_the_status(ctx, falco_fs, kube_api):
    ca = TestCa()
    deployed = ctx.run(ctx.on.config_changed(), _state(falco_fs))  # the own CA's file in place
    relation = _certificates()
    related = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0), _with_relation(deployed, relation)
    )
    served = _issue(ctx, related, ca)
    assert served.unit_status.name == "blocked"
    [peer_relation] = served.get_relations("falco-peers")
    token = _token(served)
    handed_out = WebhookIdentity(
        HTTPS_URL,
        hashlib.sha256(ca.pem.strip().encode()).hexdigest(),
        hashlib.sha256(token.encode()).hexdigest(),
    )
    fetched = dataclasses.replace(
        peer_relation, peers_data={1: {HANDED_OUT_KEY: handed_out.record(time.time())}}
    )

    out = ctx.run(ctx.on.relation_changed(fetched, remote_unit=1), _with_relation(served, fetched))

    assert out.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")


def _ca_of(kubeconfig: str) -> str:
    return base64.b64decode(_cluster(kubeconfig)["certificate-authority-data"]).decode()


def _token(state: testing.State) -> str:
    [content] = [s.tracked_content for s in state.secrets if s.label == "webhook-credentials"]
    return content["token"]


def test_relation_broken_goes_back_to_the_charms_own_ca(ctx, falco_fs, kube_api):
    served = _issue(ctx, _relate(ctx, falco_fs), TestCa())
    fetched = ctx.run(ctx.on.action("get-webhook-config"), served)  # the apiserver has it
    relation = fetched.get_relations("certificates")[0]

    out = ctx.run(ctx.on.relation_broken(relation), fetched)

    assert _ca_of(_secret_kubeconfig(kube_api)) == _own_ca(out)
    assert _own_ca(out).strip() in _intake(falco_fs, INTAKE_PEM).read_text()
    assert out.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (the TLS CA changed): run get-webhook-config"
    )


def test_without_the_relation_the_charms_own_ca_serves_https(ctx, falco_fs, kube_api):
    out = ctx.run(ctx.on.config_changed(), _state(falco_fs))

    cluster = _cluster(_secret_kubeconfig(kube_api))
    assert cluster["server"] == HTTPS_URL
    assert _ca_of(_secret_kubeconfig(kube_api)) == _own_ca(out)
    assert _k8saudit(falco_fs)["open_params"] == "http://127.0.0.1:9766/k8s-audit"
    assert out.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")


def test_a_new_certificate_reaches_the_intake_while_custom_rules_are_refused(
    ctx, falco_fs, kube_api, monkeypatch: pytest.MonkeyPatch
):
    related = _relate(ctx, falco_fs)  # Falco runs on an accepted config
    monkeypatch.setattr(Workload, "run", _refusing_custom_rules(falco_fs))
    refused = dataclasses.replace(related, config={"custom_rules": BAD_RULES})
    ca = TestCa()

    out = _issue(ctx, refused, ca)

    assert ca.pem.strip() in _intake(falco_fs, INTAKE_PEM).read_text()
    assert not _live(falco_fs, "rules.d/custom_rules.yaml").exists()
    assert _ca_of(_secret_kubeconfig(kube_api)) == ca.pem
    assert out.unit_status.name == "blocked"


BAD_RULES = """\
- rule: Unknown field
  desc: d
  condition: ka.no.such.field = 1
  output: o
  priority: WARNING
  source: k8s_audit
"""


def _refusing_custom_rules(fs: Path):
    """Workload.run where Falco's dry-run refuses any staged custom rules file."""
    run = Workload.run
    staged_rules = fs / "etc-falco" / "staging" / "rules.d" / "custom_rules.yaml"

    def refusing(self: Workload, command: list[str], *, timeout: float) -> CommandResult:
        if tuple(command[:3]) == DRY_RUN_PREFIX and staged_rules.exists():
            return CommandResult(
                1, "", "LOAD_ERR_COMPILE_CONDITION (custom_rules.yaml): unknown field"
            )
        return run(self, command, timeout=timeout)

    return refusing


NOT_A_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----"


def _broken(entry: dict[str, Any], how: str) -> dict[str, str]:
    """The provider's databag with ``entry`` spoilt in one way the library does not survive."""
    if how == "deep JSON":
        return {"certificates": json.dumps([entry]), "capabilities": "[" * 100_000}
    if how == "not JSON":
        return {"certificates": "[{oops"}
    if how == "not a list of certificates":
        return {"certificates": json.dumps({"certificate": entry["certificate"]})}
    field = {
        "bad certificate": "certificate",
        "bad CA": "ca",
        "bad CSR": "certificate_signing_request",
    }[how]
    return {"certificates": json.dumps([{**entry, field: NOT_A_CERTIFICATE}])}


@pytest.mark.parametrize(
    "how",
    [
        "bad certificate",
        "bad CA",
        "bad CSR",
        "deep JSON",
        "not JSON",
        "not a list of certificates",
    ],
)
@pytest.mark.parametrize("event", ["relation_changed", "leader_elected", "update_status"])
def test_unreadable_provider_data_blocks_and_keeps_https_running(
    ctx, falco_fs, kube_api, event, how
):
    served = _issue(ctx, _relate(ctx, falco_fs), TestCa())
    live = {path: _intake(falco_fs, path).read_bytes() for path in (INTAKE_CONFIG, INTAKE_PEM)}
    kubeconfig = _secret_kubeconfig(kube_api)
    relation = served.get_relations("certificates")[0]
    assert isinstance(relation, testing.Relation)  # not a peer or subordinate relation
    [entry] = json.loads(relation.remote_app_data["certificates"])
    broken = dataclasses.replace(relation, remote_app_data=_broken(entry, how))
    trigger = {
        "relation_changed": lambda: ctx.on.relation_changed(broken, remote_unit=0),
        "leader_elected": ctx.on.leader_elected,
        "update_status": ctx.on.update_status,
    }[event]

    out = ctx.run(trigger(), _with_relation(served, broken))

    assert out.unit_status == testing.BlockedStatus(
        "certificates: the provider's relation data does not parse"
    )
    assert {path: _intake(falco_fs, path).read_bytes() for path in live} == live
    assert _secret_kubeconfig(kube_api) == kubeconfig


# -- the key stays secret -----------------------------------------------------------------------


def test_the_private_key_is_in_no_status_log_or_action_result(
    ctx, falco_fs, kube_api, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    served = _issue(ctx, _relate(ctx, falco_fs), TestCa())
    fetched = ctx.run(ctx.on.action("get-webhook-config"), served)
    results = json.dumps(ctx.action_results)
    out = ctx.run(ctx.on.update_status(), fetched)

    pem = _intake(falco_fs, INTAKE_PEM).read_text()
    own = next(s.tracked_content for s in out.secrets if s.label == "webhook-credentials")
    keys = [_key_body(pem), _key_body(_private_key(out)), _key_body(own["ca-key"])]
    shown = [
        caplog.text,
        results,
        out.unit_status.message,
        json.dumps([dict(r.local_unit_data) for r in out.relations]),
        json.dumps([dict(r.local_app_data) for r in out.relations]),
    ]
    for key in keys:
        assert len(key) > 100
        for text in shown:
            for chunk in (key[i : i + 40] for i in range(0, len(key) - 40, 40)):
                assert chunk not in text


def _key_body(pem: str) -> str:
    """The base64 body of the PEM's private key block, on one line."""
    lines = pem.splitlines()
    start = next(i for i, line in enumerate(lines) if "PRIVATE KEY-----" in line)
    end = next(i for i in range(start + 1, len(lines)) if "PRIVATE KEY-----" in lines[i])
    return "".join(lines[start + 1 : end])
