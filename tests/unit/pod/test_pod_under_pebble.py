"""The pod's services under real Pebble, driven by ``workload.py`` as the charm drives it.

Falco is a stand-in (``fakes/fake_falco.py``) writing Falco-format alerts to the alert log; the
forwarder and the audit intake are the charm's own, from its bundle, run by its own layers.
"""

from __future__ import annotations

import http.client
import json
import ssl
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ops
import pytest
import yaml
from forwarder_helpers import SinkFactory, SinkServer, metric, wait_for
from real_pebble import Root, pebble
from tls_ca import TestCa

from audit_intake.config import AcceptedToken, token_sha256
from audit_intake.config import config_to_dict as intake_config_dict
from constants import (
    ALERT_LOG_DIR,
    FALCO_BIN,
    FALCO_CONFIG,
    FALCO_CONTAINER,
    FALCO_RULES_D,
    FALCO_SERVICE,
    FORWARDER_CONFIG,
    FORWARDER_CONTAINER,
    FORWARDER_PKG_DIR,
    FORWARDER_PORT,
    FORWARDER_SERVICE,
    INTAKE_CONFIG,
    INTAKE_METRICS_PORT,
    INTAKE_PEM,
    INTAKE_PKG_DIR,
    INTAKE_SERVICE,
    K8S_AUDIT_RULES,
    K8SAUDIT_PATH,
    K8SAUDIT_PORT,
    WEBHOOK_PORT,
    WEBSERVER_PORT,
)
from falco._cli_answers import parse_rules_listing
from falco._falco_yaml import FalcoSettings, render_falco_yaml
from falco._layer import FALCO_COMMAND, falco_layer
from falco_forwarder.config import FORMAT_FALCO_JSON, JujuTopology, SinkConfig
from payload import load_payload, manifest_digest
from sinks._forwarder_config import ForwarderOptions, forwarder_config
from sinks._forwarder_layer import forwarder_layer
from webhook._intake_service import intake_config, intake_layer
from workload import Workload, WorkloadError

STANDIN = Path(__file__).parents[1] / "fakes" / "fake_falco.py"
RULES = "- rule: Create Privileged Pod\n  priority: WARNING\n  tags: [k8s]\n"
TOPOLOGY = JujuTopology("m", "uuid", "falco-k8s", "falco-k8s/0")


@dataclass
class Pod:
    """Both containers of a unit, each under its own Pebble, sharing the alert-log volume."""

    root: Root
    falco: Workload
    forwarder: Workload
    bundle_forwarder: dict[str, bytes]
    manifest: str
    intake: Workload
    bundle_intake: dict[str, bytes]
    intake_manifest: str

    @property
    def port(self) -> int:
        """The forwarder's /healthz and /metrics port."""
        return self.root.ports[FORWARDER_PORT]

    def start_falco(self, settings: FalcoSettings | None = None) -> None:
        """What the charm does for the falco container, with the stand-in as Falco's binary."""
        script = f"#!{sys.executable}\n{STANDIN.read_text()}"
        self.falco.push_if_changed(FALCO_BIN, script, permissions=0o755)
        self.falco.push_if_changed(K8S_AUDIT_RULES, RULES)
        self.falco.ensure_dir(FALCO_RULES_D)
        text = render_falco_yaml(settings or FalcoSettings(), [K8S_AUDIT_RULES, FALCO_RULES_D])
        config = yaml.safe_load(text.split("\n", 1)[1])
        config["webserver"]["listen_port"] = self.root.ports[WEBSERVER_PORT]
        k8saudit = self.root.ports[K8SAUDIT_PORT]
        config["plugins"][0]["open_params"] = f"http://:{k8saudit}{K8SAUDIT_PATH}"
        self.falco.push_if_changed(FALCO_CONFIG, yaml.safe_dump(config))
        self.falco.ensure_dir(ALERT_LOG_DIR, permissions=0o700)
        assert self.falco.ensure_service(self.root.layer(falco_layer("digest")))

    def configure_forwarder(self, sinks: list[SinkServer]) -> bool:
        """What the charm does for the forwarder container; return whether it was (re)started."""
        configs = tuple(
            SinkConfig(f"sink{i}", FORMAT_FALCO_JSON, sink.url()) for i, sink in enumerate(sinks)
        )
        options = ForwarderOptions(alert_log_retention_mb=16)
        settings = forwarder_config(configs, TOPOLOGY, options).to_dict()
        alert_log = settings["alert_log"]
        alert_log["file"] = self.root(alert_log["file"])
        alert_log["state_dir"] = self.root(alert_log["state_dir"])
        settings["listen"]["port"] = self.port
        self.forwarder.sync_tree(
            self.bundle_forwarder, self.manifest, manifest_path=f"{FORWARDER_PKG_DIR}/.manifest"
        )
        text = json.dumps(settings, indent=1, sort_keys=True)
        reconfigured = self.forwarder.push_if_changed(FORWARDER_CONFIG, text, permissions=0o600)
        started = self.forwarder.ensure_service(
            self.root.layer(forwarder_layer(manifest_digest(self.manifest)))
        )
        if reconfigured and not started:
            self.forwarder.signal("SIGHUP")
        return started

    def configure_intake(self, pem: str, *tokens: str) -> bool:
        """What the charm does for the intake; return whether it was (re)started."""
        config = intake_config(tuple(AcceptedToken(token_sha256(t)) for t in tokens))
        settings = intake_config_dict(config)
        for key in ("tls_pem", "spool_dir"):
            settings[key] = self.root(settings[key])
        for key in ("webhook_port", "metrics_port"):
            settings[key] = self.root.ports[settings[key]]
        settings["webhook_host"] = settings["metrics_host"] = "127.0.0.1"
        settings["k8saudit_url"] = settings["k8saudit_url"].replace(
            f":{K8SAUDIT_PORT}/", f":{self.root.ports[K8SAUDIT_PORT]}/"
        )
        self.intake.sync_tree(
            self.bundle_intake, self.intake_manifest, manifest_path=f"{INTAKE_PKG_DIR}/.manifest"
        )
        new_pem = self.intake.push_if_changed(INTAKE_PEM, pem, permissions=0o600)
        text = json.dumps(settings, indent=1, sort_keys=True)
        new_config = self.intake.push_if_changed(INTAKE_CONFIG, text, permissions=0o600)
        layer = intake_layer(manifest_digest(self.intake_manifest), "listener")
        started = self.intake.ensure_service(self.root.layer(layer))
        if (new_pem or new_config) and not started:
            self.intake.signal("SIGHUP")
        return started

    def post_to_intake(self, first: int, count: int, token: str, ca: TestCa) -> int:
        """kube-apiserver with the charm's kubeconfig: https, the CA, the bearer token."""
        items = [
            {"user": {"username": "admin"}, "objectRef": {"name": f"pod-{i}"}}
            for i in range(first, first + count)
        ]
        connection = http.client.HTTPSConnection(
            "127.0.0.1",
            self.root.ports[WEBHOOK_PORT],
            timeout=10,
            context=ssl.create_default_context(cadata=ca.pem),
        )
        try:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            connection.request("POST", K8SAUDIT_PATH, json.dumps({"items": items}), headers)
            return connection.getresponse().status
        finally:
            connection.close()

    def post_audit_events(self, first: int, count: int) -> None:
        """kube-apiserver's audit webhook: one EventList to Falco's k8saudit listener."""
        items = [
            {"user": {"username": "admin"}, "objectRef": {"name": f"pod-{i}"}}
            for i in range(first, first + count)
        ]
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.root.ports[K8SAUDIT_PORT], timeout=10
        )
        try:
            connection.request(
                "POST",
                K8SAUDIT_PATH,
                json.dumps({"items": items}),
                {"Content-Type": "application/json"},
            )
            assert connection.getresponse().status == 200
        finally:
            connection.close()

    def checks_up(self, container: Workload) -> bool:
        checks = container.container.get_checks()
        return bool(checks) and all(c.status == ops.pebble.CheckStatus.UP for c in checks.values())


@pytest.fixture
def pod(tmp_path: Path, root: Root, charm_root: Path) -> Iterator[Pod]:
    with (
        pebble(tmp_path / "pebble-falco", root, FALCO_CONTAINER) as falco,
        pebble(tmp_path / "pebble-forwarder", root, FORWARDER_CONTAINER) as forwarder,
    ):
        bundle = load_payload(charm_root)
        yield Pod(
            root,
            Workload(falco.container, FALCO_SERVICE),
            Workload(forwarder.container, FORWARDER_SERVICE),
            bundle.forwarder,
            bundle.forwarder_manifest,
            Workload(forwarder.container, INTAKE_SERVICE),
            bundle.intake,
            bundle.intake_manifest,
        )


def _pods_alerts(sink: SinkServer) -> list[str]:
    """The pod names of the alerts a sink received whole (a killed sender cuts one short)."""
    names: list[str] = []
    for body in sink.bodies:
        try:
            names.append(json.loads(body)["output_fields"]["ka.resp.name"])
        except ValueError:
            continue
    return names


def test_layers_start_checks_go_up_and_alerts_flow(pod: Pod, make_sink: SinkFactory):
    sink = make_sink()
    pod.start_falco()
    assert pod.configure_forwarder([sink])

    wait_for(lambda: pod.checks_up(pod.falco) and pod.checks_up(pod.forwarder), timeout=20)
    assert pod.falco.is_running()
    assert pod.forwarder.is_running()
    log_dir = Path(pod.root(ALERT_LOG_DIR))
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    pod.post_audit_events(0, 5)
    wait_for(lambda: len(sink.bodies) == 5)
    assert _pods_alerts(sink) == [f"pod-{i}" for i in range(5)]
    alert = json.loads(sink.bodies[0])
    assert {"time", "rule", "priority", "source", "output", "output_fields", "tags"} <= set(alert)
    assert not pod.configure_forwarder([sink])  # nothing changed: nothing touched


def test_falco_names_the_cluster_on_every_alert_the_forwarder_delivers(
    pod: Pod, make_sink: SinkFactory
):
    sink = make_sink()
    pod.start_falco(FalcoSettings(cluster_name="prod-eu-1"))
    assert pod.configure_forwarder([sink])
    wait_for(lambda: pod.checks_up(pod.falco) and pod.checks_up(pod.forwarder), timeout=20)

    pod.post_audit_events(0, 3)

    wait_for(lambda: len(sink.bodies) == 3)
    assert [json.loads(body)["output_fields"]["cluster"] for body in sink.bodies] == [
        "prod-eu-1"
    ] * 3


def test_on_check_failure_restarts_a_stuck_forwarder(pod: Pod, make_sink: SinkFactory):
    sink, other = make_sink(), make_sink()
    pod.start_falco()
    pod.configure_forwarder([sink])
    wait_for(lambda: pod.checks_up(pod.forwarder), timeout=20)
    pod.configure_forwarder([sink, other])  # a SIGHUP reload: counted until a restart
    wait_for(lambda: metric(pod.port, "falco_forwarder_config_reloads_total", result="ok") == 1)

    pod.forwarder.signal("SIGSTOP")  # alive, but its /healthz no longer answers

    # Three failed probes, then Pebble restarts it: a fresh process, no reload counted.
    wait_for(lambda: not pod.checks_up(pod.forwarder), timeout=20)
    wait_for(lambda: _reloads(pod.port) == 0, timeout=40, what="a restarted forwarder")
    pod.post_audit_events(0, 3)
    wait_for(lambda: len(sink.bodies) == 3 and len(other.bodies) == 3)


def _reloads(port: int) -> float | None:
    try:
        return metric(port, "falco_forwarder_config_reloads_total", result="ok")
    except OSError:
        return None


def test_sighup_through_pebble_reloads_the_sinks(pod: Pod, make_sink: SinkFactory):
    first, second = make_sink(), make_sink()
    pod.start_falco()
    pod.configure_forwarder([first])
    wait_for(lambda: pod.checks_up(pod.forwarder), timeout=20)
    pod.post_audit_events(0, 2)
    wait_for(lambda: len(first.bodies) == 2)

    assert not pod.configure_forwarder([first, second])  # pushed, then SIGHUP: no restart

    wait_for(lambda: metric(pod.port, "falco_forwarder_config_reloads_total", result="ok") == 1)
    pod.post_audit_events(2, 2)
    wait_for(lambda: len(first.bodies) == 4 and len(second.bodies) == 4)
    assert _pods_alerts(second) == [f"pod-{i}" for i in range(4)]  # from the oldest kept
    config = Path(pod.root(FORWARDER_CONFIG))
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [p.name for p in config.parent.iterdir()] == ["config.json"]  # no temporary file


def test_exec_with_a_timeout_returns_what_the_charm_parses(pod: Pod):
    pod.start_falco()

    result = pod.falco.run([*FALCO_COMMAND, "-L", "-o", "json_output=true"], timeout=30)

    assert result.exit_code == 0
    assert [rule.name for rule in parse_rules_listing(result.stdout)] == ["Create Privileged Pod"]
    failed = pod.falco.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
    assert (failed.exit_code, failed.stdout, failed.stderr) == (3, "out\n", "err\n")
    with pytest.raises(WorkloadError, match=r"sleep timed out after 0\.5s"):
        pod.falco.run(["sleep", "10"], timeout=0.5)


def test_killing_the_forwarder_mid_stream_loses_no_alert(pod: Pod, make_sink: SinkFactory):
    sink = make_sink()
    pod.start_falco()
    pod.configure_forwarder([sink])
    wait_for(lambda: pod.checks_up(pod.forwarder), timeout=20)
    sent: list[int] = []
    stop = threading.Event()

    def apiserver() -> None:
        while not stop.wait(0.01):
            pod.post_audit_events(len(sent), 2)
            sent.extend((len(sent), len(sent) + 1))

    feeding = threading.Thread(target=apiserver)
    feeding.start()
    kills = 3
    try:
        for _ in range(kills):
            delivered = len(sink.bodies)
            # Kill a forwarder that runs and delivers again: Pebble restarts a killed one only
            # after its backoff, and a signal in between finds no process.
            wait_for(
                lambda: pod.forwarder.is_running() and len(sink.bodies) > delivered,  # noqa: B023
                timeout=30,
            )
            pod.forwarder.signal("SIGKILL")  # Pebble restarts it (on-failure: restart)
    finally:
        stop.set()
        feeding.join()

    wanted = {f"pod-{i}" for i in sent}
    wait_for(lambda: wanted <= set(_pods_alerts(sink)), timeout=60, what="every alert")
    received = _pods_alerts(sink)
    assert len(received) - len(wanted) <= kills  # at most the alert in flight, per kill
    # Each kill restarted it (Pebble's on-failure): the counters started over.
    assert metric(pod.port, "falco_forwarder_delivered_total", sink="sink0") < len(received)


# -- the audit intake in the forwarder container ------------------------------------------------


@pytest.fixture
def intake_tls(tmp_path: Path) -> tuple[TestCa, str]:
    """A CA and the intake's PEM (certificate, chain, key) for 127.0.0.1."""
    ca = TestCa()
    certificate, key = ca.server_pem(("127.0.0.1",))
    return ca, certificate + ca.pem + key


def test_the_intake_lets_in_the_token_and_falco_alerts_on_what_it_took(
    pod: Pod, make_sink: SinkFactory, intake_tls: tuple[TestCa, str]
):
    ca, pem = intake_tls
    sink = make_sink()
    pod.start_falco()
    pod.configure_forwarder([sink])
    assert pod.configure_intake(pem, "the-token")
    wait_for(lambda: pod.checks_up(pod.intake), timeout=20, what="intake-healthz up")

    refused = pod.post_to_intake(0, 2, "not-the-token", ca)
    taken = pod.post_to_intake(2, 3, "the-token", ca)

    assert (refused, taken) == (401, 200)
    wait_for(lambda: len(sink.bodies) == 3, timeout=20)
    assert _pods_alerts(sink) == ["pod-2", "pod-3", "pod-4"]
    intake_port = pod.root.ports[INTAKE_METRICS_PORT]
    assert metric(intake_port, "audit_intake_refused_total", reason="wrong_token") == 1
    assert metric(intake_port, "audit_intake_batches_received_total") == 1
    for path in (INTAKE_PEM, INTAKE_CONFIG):
        assert stat.S_IMODE(Path(pod.root(path)).stat().st_mode) == 0o600
    assert not pod.configure_intake(pem, "the-token")  # nothing changed: nothing touched


def test_a_new_token_is_taken_through_pebbles_sighup_without_a_restart(
    pod: Pod, make_sink: SinkFactory, intake_tls: tuple[TestCa, str]
):
    ca, pem = intake_tls
    sink = make_sink()
    pod.start_falco()
    pod.configure_forwarder([sink])
    pod.configure_intake(pem, "first")
    wait_for(lambda: pod.checks_up(pod.intake), timeout=20)

    assert not pod.configure_intake(pem, "second")

    intake_port = pod.root.ports[INTAKE_METRICS_PORT]
    wait_for(lambda: metric(intake_port, "audit_intake_config_reloads_total", result="ok") == 1)
    assert pod.post_to_intake(0, 1, "first", ca) == 401
    assert pod.post_to_intake(1, 1, "second", ca) == 200
    wait_for(lambda: len(sink.bodies) == 1, timeout=20)
