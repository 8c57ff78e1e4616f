"""Fixtures for the charm's Scenario tests."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ops
import pytest
import yaml
from charm_pod import STOCK_RULES, Calls, new_falco_fs
from fakes.fake_falco_metrics import FalcoMetrics
from fakes.fake_kube_api import FakeApiServer, serve
from loopback_http import QuietHandler, serving
from ops import testing

from audit_intake.metrics import IntakeMetrics
from charm import FalcoK8sCharm
from constants import CHARM_RULES_FILE, FALCO_CONTAINER, FALCO_SERVICE
from falco import _reload as falco_reload
from sinks import _alert_sinks as alert_sinks
from webhook import _intake_service as intake_service

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def kube_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    """A fake Kubernetes API on 127.0.0.1 that the charm's lightkube client reaches."""
    api = FakeApiServer()
    with serve(api) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "clusters": [{"name": "k8s", "cluster": {"server": url}}],
                    "users": [{"name": "charm", "user": {"token": "service-account-token"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "k8s", "user": "charm"}}],
                    "current-context": "c",
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        yield api


@pytest.fixture(autouse=True)
def _forwarder_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the charm's /metrics reads at a closed port, not at 9802.

    Tests must not depend on what this machine runs on 9802; no forwarder answers unless a
    test starts one.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(alert_sinks, "METRICS_PORT", port)


@pytest.fixture(autouse=True)
def intake_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[IntakeMetrics]:
    """The audit intake's /metrics on 127.0.0.1, rendered by the intake's own counters.

    Scenario runs no process in the forwarder container: this is the page the intake would
    serve (nothing refused, nothing waiting) unless a test counts something on it.
    """
    counters = IntakeMetrics(dict)

    class Page(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = counters.render().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Page) as port:
        monkeypatch.setattr(intake_service, "METRICS_PORT", port)
        yield counters


@pytest.fixture
def charm_root(tmp_path: Path) -> Path:
    """A charm directory as charmcraft packs it, with small stand-ins for the plugin binaries.

    The COS rules and dashboards are read beside the `cos` package, wherever it runs from.
    """
    root = tmp_path / "charm"
    plugins = root / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "libk8saudit.so").write_bytes(b"\x7fELF k8saudit 0.18.0 stand-in")
    (plugins / "libjson.so").write_bytes(b"\x7fELF json 0.7.4 stand-in")
    (plugins / "k8s_audit_rules.yaml").write_text(STOCK_RULES)
    for package in ("falco_forwarder", "audit_intake"):
        shutil.copytree(SRC / package, root / "src" / package)
    (root / CHARM_RULES_FILE).parent.mkdir(parents=True)
    shutil.copy(SRC.parent / CHARM_RULES_FILE, root / CHARM_RULES_FILE)
    return root


@pytest.fixture
def falco_metrics(falco_fs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FalcoMetrics]:
    """Falco's /metrics on 127.0.0.1 (a stand-in), reporting what the falco container runs.

    A Pebble restart of the falco service reloads it; the wait for a reload is kept short.
    """
    standin = FalcoMetrics(falco_fs / "etc-falco")
    restart = ops.Container.restart

    def restarting(self: ops.Container, *names: str) -> None:
        restart(self, *names)
        if self.name == FALCO_CONTAINER and FALCO_SERVICE in names:
            standin.restart()

    monkeypatch.setattr(ops.Container, "restart", restarting)
    with standin.serving() as port:
        monkeypatch.setattr(falco_reload, "METRICS_PORT", port)
        monkeypatch.setattr(falco_reload, "CONFIRM_WAIT_SECONDS", 0.5)
        monkeypatch.setattr(falco_reload, "POLL_SECONDS", 0.05)
        yield standin


@pytest.fixture
def ctx(
    charm_root: Path, kube_api: FakeApiServer, falco_metrics: FalcoMetrics
) -> testing.Context[FalcoK8sCharm]:
    """The charm, reaching a fake Kubernetes API on 127.0.0.1 through its own lightkube client."""
    return testing.Context(FalcoK8sCharm, charm_root=charm_root)


@pytest.fixture
def falco_fs(tmp_path: Path) -> Path:
    """The falco container's filesystem, kept across runs so a test can chain hooks."""
    return new_falco_fs(tmp_path / "falco-fs")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    seen = Calls()
    push, restart, start, send_signal = (
        ops.Container.push,
        ops.Container.restart,
        ops.Container.start,
        ops.Container.send_signal,
    )

    def spy_push(self: ops.Container, path: str, *args: Any, **kwargs: Any) -> None:
        seen.pushed.append(f"{self.name}:{path}")
        push(self, path, *args, **kwargs)

    def spy_restart(self: ops.Container, *names: str) -> None:
        seen.restarted.extend(f"{self.name}:{n}" for n in names)
        restart(self, *names)

    def spy_start(self: ops.Container, *names: str) -> None:
        seen.started.extend(f"{self.name}:{n}" for n in names)
        start(self, *names)

    def spy_signal(self: ops.Container, sig: str, *names: str) -> None:
        seen.signals.append((sig, names))
        send_signal(self, sig, *names)

    monkeypatch.setattr(ops.Container, "push", spy_push)
    monkeypatch.setattr(ops.Container, "restart", spy_restart)
    monkeypatch.setattr(ops.Container, "start", spy_start)
    monkeypatch.setattr(ops.Container, "send_signal", spy_signal)
    return seen
