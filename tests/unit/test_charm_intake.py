"""The audit intake as the charm runs it, in Scenario: credentials, the service, rotation.

The forwarder container's filesystem is real directories (``charm_pod.pod``), so what the charm
pushes for the intake is read back from disk; the cluster side talks to the fake API.
"""

from __future__ import annotations

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
from charm_pod import (
    WEBHOOK_AT,
    falco_container,
    forwarder_container,
    new_falco_fs,
    peers,
    pod,
)
from ops import testing

from audit_intake import metrics
from audit_intake.metrics import IntakeMetrics
from constants import INTAKE_CONFIG, INTAKE_PEM, LEGACY_WEBHOOK_PEM
from webhook._apiserver_file import BASELINE_KEY
from webhook._credentials import CREDENTIALS_LABEL, ID_KEY
from webhook._tls import WebhookIdentity

NS = "audit"
ROTATED = (
    "kube-apiserver webhook file must be replaced (the webhook token was rotated):"
    " run get-webhook-config"
)


def state(fs: Path, *, leader: bool = True, **kwargs: Any) -> testing.State:
    kwargs.setdefault("relations", {peers()})
    return testing.State(
        containers=pod(falco_container(fs)),
        leader=leader,
        model=testing.Model(name=NS),
        **kwargs,
    )


def intake_file(fs: Path, path: str) -> Path:
    return fs.parent / f"{fs.name}-forwarder" / "intake-etc" / Path(path).name


def intake_config(fs: Path) -> dict[str, Any]:
    return json.loads(intake_file(fs, INTAKE_CONFIG).read_text())


def credentials(out: testing.State) -> dict[str, str]:
    [secret] = [s for s in out.secrets if s.label == CREDENTIALS_LABEL]
    content = secret.latest_content or secret.tracked_content
    assert content is not None
    return dict(content)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_leader_creates_the_credentials_and_the_intake_runs_on_the_tokens_hash(
    ctx, falco_fs, kube_api
):
    out = ctx.run(ctx.on.config_changed(), state(falco_fs))

    [secret] = [s for s in out.secrets if s.label == CREDENTIALS_LABEL]
    assert secret.owner == "app"
    [relation] = out.get_relations("falco-peers")
    assert relation.local_app_data[ID_KEY] == secret.id
    token = credentials(out)["token"]
    assert len(token) >= 40
    config = intake_config(falco_fs)
    assert config["tokens"] == [{"sha256": sha256(token), "expires": None}]
    assert token not in intake_file(falco_fs, INTAKE_CONFIG).read_text()
    assert config["webhook_port"] == 9765
    assert config["tls_pem"] == INTAKE_PEM
    assert config["k8saudit_url"] == "http://127.0.0.1:9766/k8s-audit"
    assert config["spool_dir"] == "/var/lib/falco-alerts/intake"
    for path in (INTAKE_CONFIG, INTAKE_PEM):
        assert stat.S_IMODE(intake_file(falco_fs, path).stat().st_mode) == 0o600
    service = out.get_container("forwarder").plan.services["audit-intake"]
    assert service.command == "python3 -m audit_intake --config /etc/audit-intake/config.json"
    assert service.environment["PYTHONPATH"] == "/opt/audit-intake"
    assert out.get_container("forwarder").service_statuses["audit-intake"].value == "active"
    assert out.unit_status == testing.ActiveStatus(WEBHOOK_AT)

    again = ctx.run(ctx.on.update_status(), out)
    assert credentials(again)["token"] == token
    assert len([s for s in again.secrets if s.label == CREDENTIALS_LABEL]) == 1


def test_a_unit_that_is_not_the_leader_serves_the_leaders_token(ctx, falco_fs, kube_api):
    leader = ctx.run(ctx.on.config_changed(), state(falco_fs))

    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(leader, leader=False))

    token = credentials(leader)["token"]
    assert intake_config(falco_fs)["tokens"][0]["sha256"] == sha256(token)
    assert out.unit_status == testing.ActiveStatus(WEBHOOK_AT)


def test_without_pebble_in_the_forwarder_container_the_webhook_waits(ctx, falco_fs, kube_api):
    unreachable = forwarder_container(falco_fs.parent / "unreachable", can_connect=False)
    start = dataclasses.replace(
        state(falco_fs), containers={falco_container(falco_fs), unreachable}
    )

    out = ctx.run(ctx.on.config_changed(), start)

    assert out.unit_status == testing.WaitingStatus(
        "waiting for Pebble in the forwarder container"
    )


def test_rotation_swaps_the_token_in_place_and_asks_for_the_apiserver_file(
    ctx, falco_fs, kube_api, calls
):
    deployed = ctx.run(ctx.on.config_changed(), state(falco_fs))
    old = credentials(deployed)["token"]
    calls.reset()

    rotated = ctx.run(
        ctx.on.action("rotate-webhook-token", params={"keep-previous-minutes": 0}), deployed
    )

    new = credentials(rotated)["token"]
    assert new != old
    assert intake_config(falco_fs)["tokens"] == [{"sha256": sha256(new), "expires": None}]
    assert calls.signals == [("SIGHUP", ("audit-intake",))]
    assert calls.restarted == []
    assert ctx.action_results is not None
    assert "run get-webhook-config" in ctx.action_results["result"]
    assert rotated.unit_status == testing.BlockedStatus(ROTATED)

    fetched = ctx.run(ctx.on.action("get-webhook-config"), rotated)

    assert ctx.action_results is not None
    kubeconfig = yaml.safe_load(ctx.action_results["webhook-config"])
    assert kubeconfig["users"][0]["user"]["token"] == new
    assert fetched.unit_status == testing.ActiveStatus(WEBHOOK_AT)


def test_rotation_may_keep_the_previous_token_for_a_while(ctx, falco_fs, kube_api):
    deployed = ctx.run(ctx.on.config_changed(), state(falco_fs))
    old = credentials(deployed)["token"]
    before = time.time()

    rotated = ctx.run(
        ctx.on.action("rotate-webhook-token", params={"keep-previous-minutes": 30}), deployed
    )

    new = credentials(rotated)["token"]
    current, previous = intake_config(falco_fs)["tokens"]
    assert current == {"sha256": sha256(new), "expires": None}
    assert previous["sha256"] == sha256(old)
    assert before + 30 * 60 <= previous["expires"] <= time.time() + 30 * 60


def test_rotation_is_the_leaders(ctx, falco_fs, kube_api):
    deployed = ctx.run(ctx.on.config_changed(), state(falco_fs))

    with pytest.raises(testing.ActionFailed, match="run it on the leader"):
        ctx.run(ctx.on.action("rotate-webhook-token"), dataclasses.replace(deployed, leader=False))


def test_the_other_units_learn_of_a_rotation_through_the_peer_relation(
    ctx, falco_fs, kube_api, tmp_path: Path
):
    deployed = ctx.run(ctx.on.config_changed(), state(falco_fs))
    rotated = ctx.run(ctx.on.action("rotate-webhook-token"), deployed)
    [before] = deployed.get_relations("falco-peers")
    [after] = rotated.get_relations("falco-peers")
    assert after.local_app_data != before.local_app_data  # relation-changed on every peer

    other_fs = new_falco_fs(tmp_path / "other-unit")
    other_unit = dataclasses.replace(
        rotated, leader=False, containers=pod(falco_container(other_fs))
    )

    follower = ctx.run(ctx.on.relation_changed(after, remote_unit=1), other_unit)

    token = credentials(rotated)["token"]
    assert intake_config(other_fs)["tokens"][0]["sha256"] == sha256(token)
    assert follower.unit_status == testing.BlockedStatus(ROTATED)


def test_the_token_is_in_no_status_log_relation_or_file_but_the_admins(
    ctx, falco_fs, kube_api, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    metrics_endpoint = testing.Relation("metrics-endpoint", remote_app_name="prometheus")
    deployed = ctx.run(
        ctx.on.config_changed(), state(falco_fs, relations={peers(), metrics_endpoint})
    )
    rotated = ctx.run(
        ctx.on.action("rotate-webhook-token", params={"keep-previous-minutes": 5}), deployed
    )
    out = ctx.run(ctx.on.update_status(), rotated)

    tokens = [credentials(deployed)["token"], credentials(out)["token"]]
    files = [
        path.read_text(errors="replace")
        for root in (falco_fs, falco_fs.parent / f"{falco_fs.name}-forwarder")
        for path in root.rglob("*")
        if path.is_file()
    ]
    shown = [
        caplog.text,
        out.unit_status.message,
        json.dumps([dict(r.local_unit_data) for r in out.relations]),
        json.dumps([dict(r.local_app_data) for r in out.relations]),
        *files,
    ]
    for token in tokens:
        assert not [text for text in shown if token in text]


def test_an_upgraded_unit_asks_for_the_file_with_tls_and_a_token(ctx, falco_fs, kube_api):
    """The file the previous revision served: plain HTTP, no token, assumed in place."""
    held = WebhookIdentity("http://10.152.183.77:9765/k8s-audit").record(1.0)
    upgraded = state(falco_fs, relations={peers(local_app_data={BASELINE_KEY: held})})

    out = ctx.run(ctx.on.upgrade_charm(), upgraded)

    assert out.unit_status == testing.BlockedStatus(
        "kube-apiserver webhook file must be replaced (the webhook now needs TLS and a token):"
        " run get-webhook-config"
    )


def test_an_upgraded_unit_drops_the_key_k8saudit_served_tls_with(ctx, falco_fs, kube_api):
    """TLS ends at the intake now: the previous revision's PEM (its private key) must go."""
    legacy = falco_fs / "etc-falco" / Path(LEGACY_WEBHOOK_PEM).name
    legacy.write_text("-----BEGIN PRIVATE KEY-----\nold\n-----END PRIVATE KEY-----\n")

    ctx.run(ctx.on.upgrade_charm(), state(falco_fs))

    assert not legacy.exists()


def test_posts_the_intake_refused_are_noted_in_the_status(
    ctx, falco_fs, kube_api, intake_metrics: IntakeMetrics
):
    deployed = ctx.run(ctx.on.config_changed(), state(falco_fs))
    intake_metrics.inc(metrics.REFUSED, 3, reason="wrong_token")
    intake_metrics.inc(metrics.REFUSED, 1, reason="unauthenticated")

    out = ctx.run(ctx.on.update_status(), deployed)

    assert out.unit_status == testing.ActiveStatus(
        f"4 audit posts refused: no or wrong token; {WEBHOOK_AT}"
    )


def test_a_revision_of_the_credentials_no_unit_reads_is_removed(ctx, falco_fs, kube_api):
    deployed = ctx.run(ctx.on.config_changed(), state(falco_fs))
    rotated = ctx.run(ctx.on.action("rotate-webhook-token"), deployed)
    [secret] = [s for s in rotated.secrets if s.label == CREDENTIALS_LABEL]

    ctx.run(ctx.on.secret_remove(secret, revision=1), rotated)

    assert ctx.removed_secret_revisions == [1]


def test_with_a_certificates_provider_its_library_removes_the_revision_once(
    ctx, falco_fs, kube_api
):
    """The library observes secret-remove for every secret; the charm leaves it the job."""
    provider = testing.Relation("certificates", remote_app_name="self-signed-certificates")
    deployed = ctx.run(ctx.on.config_changed(), state(falco_fs, relations={peers(), provider}))
    rotated = ctx.run(ctx.on.action("rotate-webhook-token"), deployed)
    [secret] = [s for s in rotated.secrets if s.label == CREDENTIALS_LABEL]

    ctx.run(ctx.on.secret_remove(secret, revision=1), rotated)

    assert ctx.removed_secret_revisions == [1]


def test_while_the_providers_data_does_not_parse_the_charm_removes_the_revision(
    ctx, falco_fs, kube_api
):
    """The library is not set up on data it would raise on: nobody else removes it."""
    provider = testing.Relation(
        "certificates",
        remote_app_name="self-signed-certificates",
        remote_app_data={"certificates": "[" * 100_000},
    )
    deployed = ctx.run(ctx.on.config_changed(), state(falco_fs, relations={peers(), provider}))
    rotated = ctx.run(ctx.on.action("rotate-webhook-token"), deployed)
    [secret] = [s for s in rotated.secrets if s.label == CREDENTIALS_LABEL]

    ctx.run(ctx.on.secret_remove(secret, revision=1), rotated)

    assert ctx.removed_secret_revisions == [1]
