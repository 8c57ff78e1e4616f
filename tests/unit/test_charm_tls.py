"""The audit webhook's TLS in Scenario: a real test CA signs the charm's own CSR.

The cluster side talks HTTP to the fake API on 127.0.0.1; the falco container's filesystem is
real, so modes and contents of what the charm pushes are read back from disk.
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
from charm_pod import DRY_RUN_PREFIX, Calls, falco_container, pod
from fakes.fake_kube_api import FakeApiServer
from ops import testing
from tls_ca import TestCa, csr_sans, provider_databag, requested_csrs

from constants import FALCO_CONFIG, WEBHOOK_PEM
from webhook._apiserver_file import HANDED_OUT_KEY
from webhook._tls import WebhookIdentity
from workload import CommandResult, Workload

NS = "audit"
SERVICE_NAME = "falco-k8s-audit-webhook"
SERVICE = f"/api/v1/namespaces/{NS}/services/{SERVICE_NAME}"
CONFIGMAP = f"/api/v1/namespaces/{NS}/configmaps/{SERVICE_NAME}"
DNS_NAMES = {
    SERVICE_NAME,
    f"{SERVICE_NAME}.{NS}",
    f"{SERVICE_NAME}.{NS}.svc",
    f"{SERVICE_NAME}.{NS}.svc.cluster.local",
}
HTTPS_URL = "https://10.152.183.77:9765/k8s-audit"
PEM_NAME = "k8saudit-webhook.pem"


def _state(fs: Path, *relations: Any, **config: Any) -> testing.State:
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


def _k8saudit(fs: Path) -> dict[str, Any]:
    config = yaml.safe_load(_live(fs, "falco.yaml").read_text())
    return next(p for p in config["plugins"] if p["name"] == "k8saudit")


def _cluster(kubeconfig: str) -> dict[str, str]:
    return yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]


def _configmap_kubeconfig(kube_api: FakeApiServer) -> str:
    return kube_api.objects[CONFIGMAP]["data"]["webhook-config.yaml"]


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
    served = _issue(ctx, _relate(ctx, falco_fs), TestCa())
    # The admin deleted the Service to move it, as the charm's message tells them to.
    del kube_api.objects[SERVICE]
    moved = dataclasses.replace(served, config={"webhook_cluster_ip": "10.152.183.200"})

    out = ctx.run(ctx.on.config_changed(), moved)

    assert _requested(out)[0] == {"10.152.183.200"}
    # The certificate read at the start of the hook does not name the new address: say so.
    assert out.unit_status == testing.ActiveStatus(
        "webhook certificate lacks 10.152.183.200; webhook https://10.152.183.200:9765/k8s-audit"
    )
    reissued = _issue(ctx, out, TestCa())
    assert reissued.unit_status == testing.ActiveStatus(
        "webhook https://10.152.183.200:9765/k8s-audit"
    )


def test_before_the_certificate_comes_falco_stays_on_http(ctx, falco_fs, kube_api):
    out = _relate(ctx, falco_fs)

    assert _k8saudit(falco_fs)["open_params"] == "http://:9765/k8s-audit"
    assert not _live(falco_fs, "k8saudit-webhook.pem").exists()
    assert out.unit_status == testing.ActiveStatus(
        "no TLS yet: waiting for a certificate; webhook http://10.152.183.77:9765/k8s-audit"
    )


# -- a certificate is available -----------------------------------------------------------------


def test_certificate_serves_https_from_one_private_pem(ctx, falco_fs, kube_api):
    ca = TestCa()
    out = _issue(ctx, _relate(ctx, falco_fs), ca)

    pem = _live(falco_fs, "k8saudit-webhook.pem")
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    blocks = [line for line in pem.read_text().splitlines() if line.startswith("-----BEGIN")]
    assert blocks[0] == "-----BEGIN CERTIFICATE-----"  # the leaf first, for Go's tls
    assert blocks[-1] == "-----BEGIN PRIVATE KEY-----"
    plugin = _k8saudit(falco_fs)
    assert plugin["open_params"] == "https://:9765/k8s-audit"
    assert plugin["init_config"]["sslCertificate"] == WEBHOOK_PEM
    digest = hashlib.sha256(pem.read_bytes()).hexdigest()
    assert f"# webhook certificate sha256: {digest}\n" in _live(falco_fs, "falco.yaml").read_text()
    assert out.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")


def test_kubeconfig_is_https_with_the_relations_ca(ctx, falco_fs, kube_api):
    ca = TestCa()
    _issue(ctx, _relate(ctx, falco_fs), ca)

    kubeconfig = _configmap_kubeconfig(kube_api)
    cluster = _cluster(kubeconfig)
    assert cluster["server"] == HTTPS_URL
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == ca.pem
    assert _live(falco_fs, "webhook-config.yaml").read_text() == kubeconfig


def test_certificate_passes_the_dry_run_gate_and_leaves_no_staged_key(
    ctx, falco_fs, kube_api, monkeypatch: pytest.MonkeyPatch
):
    related = _relate(ctx, falco_fs)
    staged: list[tuple[str, int]] = []
    monkeypatch.setattr(Workload, "run", _staging_recorder(staged, falco_fs))

    _issue(ctx, related, TestCa())

    [(staged_yaml, mode)] = staged  # one dry-run saw the staged PEM, and falco.yaml naming it
    assert "sslCertificate: /etc/falco/staging/k8saudit-webhook.pem" in staged_yaml
    assert stat.S_IMODE(mode) == 0o600
    assert not (falco_fs / "etc-falco" / "staging" / "k8saudit-webhook.pem").exists()


def _staging_recorder(seen: list[tuple[str, int]], fs: Path):
    """Workload.run, noting the staged falco.yaml and PEM mode at each dry-run."""
    run = Workload.run
    staging = fs / "etc-falco" / "staging"

    def recording(self: Workload, command: list[str], *, timeout: float) -> CommandResult:
        pem = staging / "k8saudit-webhook.pem"
        if tuple(command[:3]) == DRY_RUN_PREFIX and pem.exists():
            seen.append(((staging / "falco.yaml").read_text(), pem.stat().st_mode))
        return run(self, command, timeout=timeout)

    return recording


# -- rotation -------------------------------------------------------------------------------------


def test_renewal_reloads_falco_once_without_a_pebble_restart(
    ctx, falco_fs, kube_api, calls: Calls
):
    ca = TestCa()
    served = _issue(ctx, _relate(ctx, falco_fs), ca)
    before = _live(falco_fs, "falco.yaml").read_bytes()
    [first_csr] = requested_csrs(served.get_relations("certificates")[0].local_unit_data)
    calls.reset()

    # The library's renewal: the certificate's secret expires, a new CSR replaces the old one.
    renewing = ctx.run(ctx.on.secret_expired(_certificate_secret(served), revision=1), served)
    [second_csr] = requested_csrs(renewing.get_relations("certificates")[0].local_unit_data)
    assert second_csr != first_csr
    # A hook before the provider answers keeps the webhook on the certificate it has.
    waiting = ctx.run(ctx.on.update_status(), renewing)
    assert waiting.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")
    assert [p for p in calls.pushed if p.startswith("falco:")] == []

    renewed = _issue(ctx, waiting, ca)

    assert calls.restarted == []
    assert calls.started == []
    assert calls.signals == []
    live_writes = [
        p for p in calls.pushed if p.startswith("falco:/etc/falco/") and "staging" not in p
    ]
    # The PEM first, then falco.yaml, once: that one write is Falco's one hot reload.
    assert live_writes == [f"falco:{WEBHOOK_PEM}", f"falco:{FALCO_CONFIG}"]
    after = _live(falco_fs, "falco.yaml").read_bytes()
    assert after != before
    # What confirms the reload: Falco's sha256 of falco.yaml (its /metrics) can only match the
    # bytes written if Falco reloaded with the file that names the new PEM's digest.
    pem_digest = hashlib.sha256(_live(falco_fs, "k8saudit-webhook.pem").read_bytes()).hexdigest()
    assert f"# webhook certificate sha256: {pem_digest}\n".encode() in after
    assert renewed.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")


def _certificate_secret(state: testing.State) -> testing.Secret:
    """The secret where the library keeps the issued certificate, due at renewal time."""
    [secret] = [s for s in state.secrets if "-certificate-" in (s.label or "")]
    return secret


def test_unchanged_certificate_touches_nothing(ctx, falco_fs, kube_api, calls: Calls):
    served = _issue(ctx, _relate(ctx, falco_fs), TestCa())
    calls.reset()

    ctx.run(ctx.on.update_status(), served)

    assert [p for p in calls.pushed if p.startswith("falco:")] == []
    assert calls.restarted == []


def test_ca_change_asks_for_the_apiserver_file_until_get_webhook_config(ctx, falco_fs, kube_api):
    peers = testing.PeerRelation("falco-peers")
    deployed = ctx.run(ctx.on.config_changed(), _state(falco_fs, peers))
    assert deployed.unit_status.name == "active"  # the first file served is taken as in place
    old_ca, new_ca = TestCa("first CA"), TestCa("second CA")
    relation = _certificates()
    related = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0), _with_relation(deployed, relation)
    )

    served = _issue(ctx, related, old_ca)
    assert served.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (Falco now serves TLS):"
        " run get-webhook-config"
    )
    fetched = ctx.run(ctx.on.action("get-webhook-config"), served)
    assert ctx.action_results is not None
    assert _ca_of(ctx.action_results["webhook-config"]) == old_ca.pem
    assert fetched.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")

    rotated = _issue(ctx, fetched, new_ca)

    assert rotated.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (the TLS CA changed): run get-webhook-config"
    )
    assert _ca_of(_configmap_kubeconfig(kube_api)) == new_ca.pem
    refetched = ctx.run(ctx.on.action("get-webhook-config"), rotated)
    assert _ca_of(ctx.action_results["webhook-config"]) == new_ca.pem
    assert refetched.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")
    assert ctx.run(ctx.on.update_status(), refetched).unit_status == refetched.unit_status


def test_the_file_handed_out_on_another_unit_clears_the_status(ctx, falco_fs, kube_api):
    ca = TestCa()
    served = _issue(ctx, _relate(ctx, falco_fs, testing.PeerRelation("falco-peers")), ca)
    assert served.unit_status.name == "blocked"
    peers = served.get_relations("falco-peers")[0]
    handed_out = WebhookIdentity(HTTPS_URL, hashlib.sha256(ca.pem.strip().encode()).hexdigest())
    fetched = dataclasses.replace(
        peers, peers_data={1: {HANDED_OUT_KEY: handed_out.record(time.time())}}
    )

    out = ctx.run(ctx.on.relation_changed(fetched, remote_unit=1), _with_relation(served, fetched))

    assert out.unit_status == testing.ActiveStatus(f"webhook {HTTPS_URL}")


def _ca_of(kubeconfig: str) -> str:
    return base64.b64decode(_cluster(kubeconfig)["certificate-authority-data"]).decode()


def test_relation_broken_goes_back_to_http(ctx, falco_fs, kube_api):
    peers = testing.PeerRelation("falco-peers")
    served = _issue(ctx, _relate(ctx, falco_fs, peers), TestCa())
    fetched = ctx.run(ctx.on.action("get-webhook-config"), served)  # the apiserver has https
    relation = fetched.get_relations("certificates")[0]

    out = ctx.run(ctx.on.relation_broken(relation), fetched)

    assert not _live(falco_fs, "k8saudit-webhook.pem").exists()
    plugin = _k8saudit(falco_fs)
    assert plugin["open_params"] == "http://:9765/k8s-audit"
    assert "sslCertificate" not in plugin["init_config"]
    cluster = _cluster(_configmap_kubeconfig(kube_api))
    assert cluster == {"server": "http://10.152.183.77:9765/k8s-audit"}
    assert out.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (TLS was removed): run get-webhook-config"
    )


def test_without_the_relation_the_webhook_is_plain_http_and_says_so(ctx, falco_fs, kube_api):
    out = ctx.run(ctx.on.config_changed(), _state(falco_fs))

    assert _k8saudit(falco_fs)["open_params"] == "http://:9765/k8s-audit"
    assert "# webhook certificate" not in _live(falco_fs, "falco.yaml").read_text()
    assert out.unit_status == testing.ActiveStatus(
        "no TLS: relate certificates; webhook http://10.152.183.77:9765/k8s-audit"
    )


def test_a_new_certificate_reaches_falco_while_custom_rules_are_refused(
    ctx, falco_fs, kube_api, monkeypatch: pytest.MonkeyPatch
):
    peers = testing.PeerRelation("falco-peers")
    related = _relate(ctx, falco_fs, peers)  # Falco runs on an accepted config (http)
    monkeypatch.setattr(Workload, "run", _refusing_custom_rules(falco_fs))
    refused = dataclasses.replace(related, config={"custom_rules": BAD_RULES})

    out = _issue(ctx, refused, TestCa())

    # The last accepted config, with the new certificate: the webhook file and Falco agree.
    assert _k8saudit(falco_fs)["open_params"] == "https://:9765/k8s-audit"
    assert not _live(falco_fs, "rules.d/custom_rules.yaml").exists()
    assert _cluster(_configmap_kubeconfig(kube_api))["server"] == HTTPS_URL
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


def test_unreadable_provider_data_blocks_and_keeps_https_running(ctx, falco_fs, kube_api):
    served = _issue(ctx, _relate(ctx, falco_fs), TestCa())
    live = {name: _live(falco_fs, name).read_bytes() for name in ("falco.yaml", PEM_NAME)}
    configmap = _configmap_kubeconfig(kube_api)
    relation = served.get_relations("certificates")[0]
    assert isinstance(relation, testing.Relation)  # not a peer or subordinate relation
    [entry] = json.loads(relation.remote_app_data["certificates"])
    entry["certificate"] = (
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----"
    )
    broken = dataclasses.replace(relation, remote_app_data={"certificates": json.dumps([entry])})

    out = ctx.run(ctx.on.update_status(), _with_relation(served, broken))

    assert out.unit_status == testing.BlockedStatus(
        "certificates: the provider's relation data does not parse"
    )
    assert {name: _live(falco_fs, name).read_bytes() for name in live} == live
    assert _configmap_kubeconfig(kube_api) == configmap


# -- the key stays secret -----------------------------------------------------------------------


def test_the_private_key_is_in_no_status_log_or_action_result(
    ctx, falco_fs, kube_api, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    peers = testing.PeerRelation("falco-peers")
    served = _issue(ctx, _relate(ctx, falco_fs, peers), TestCa())
    fetched = ctx.run(ctx.on.action("get-webhook-config"), served)
    results = json.dumps(ctx.action_results)
    out = ctx.run(ctx.on.update_status(), fetched)

    pem = _live(falco_fs, "k8saudit-webhook.pem").read_text()
    keys = [_key_body(pem), _key_body(_private_key(out))]
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
