"""``python3 -m audit_intake`` as Pebble runs it: exit codes, SIGHUP reload, SIGTERM, metrics."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from intake_helpers import (
    TOKEN,
    FalcoLoop,
    fresh_batch,
    intake_config,
    post,
    recorded_events,
)
from tls_ca import TestCa

from audit_intake.config import config_to_dict, token_sha256

SRC = Path(__file__).resolve().parents[3] / "src"
EVENTS = recorded_events()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write(path: Path, **overrides: object) -> dict[str, object]:
    data = config_to_dict(intake_config(path.parent / "spool", 1, **overrides))  # type: ignore[arg-type]
    path.write_text(json.dumps(data))
    return data


def start(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "audit_intake", "--config", str(config), *extra],
        env={"PYTHONPATH": str(SRC)},
        stderr=subprocess.PIPE,
        text=True,
    )


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def wait_answering(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            get(port, "/healthz")
            return
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def running(
    tmp_path: Path, falco: FalcoLoop, ports: tuple[int, int]
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    config = tmp_path / "config.json"
    write(
        config,
        webhook_port=ports[0],
        metrics_port=ports[1],
        k8saudit_url=f"http://127.0.0.1:{falco.port}/k8s-audit",
    )
    process = start(config)
    wait_answering(ports[1], process)
    yield config, process
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_sighup_swaps_the_token_in_place_and_sigterm_stops_cleanly(
    running: tuple[Path, subprocess.Popen[str]], ports: tuple[int, int], falco: FalcoLoop
):
    config, process = running
    body, ids = fresh_batch(EVENTS, 5)
    assert post(ports[0], body).status == 200
    data = json.loads(config.read_text())
    data["tokens"] = [{"sha256": token_sha256("rotated"), "expires": None}]
    config.write_text(json.dumps(data))

    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while post(ports[0], b"{}", token="rotated").status == 401:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    old = post(ports[0], body)
    _, page = get(ports[1], "/metrics")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)

    assert old.status == 401
    assert falco.wait_for(ids)
    assert 'audit_intake_config_reloads_total{result="ok"} 1' in page
    assert process.returncode == 0
    assert TOKEN not in stderr
    assert "rotated" not in stderr


def test_a_bad_reload_keeps_the_running_tokens_and_is_counted(
    running: tuple[Path, subprocess.Popen[str]], ports: tuple[int, int]
):
    config, process = running
    config.write_text("{not json")

    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while 'reloads_total{result="error"} 1' not in get(ports[1], "/metrics")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    assert post(ports[0], fresh_batch(EVENTS, 1)[0]).status == 200
    assert process.poll() is None


def test_a_reload_may_swap_in_a_certificate_but_not_move_the_port(
    running: tuple[Path, subprocess.Popen[str]], ports: tuple[int, int], tmp_path: Path
):
    config, process = running
    ca = TestCa()
    certificate, key = ca.server_pem(("127.0.0.1",))
    pem = tmp_path / "webhook.pem"
    pem.write_text(certificate + key)
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "tls_pem": str(pem)}))
    process.send_signal(signal.SIGHUP)
    context = ssl.create_default_context(cadata=ca.pem)
    deadline = time.monotonic() + 10
    while True:
        try:
            reply = post(ports[0], fresh_batch(EVENTS, 1)[0], context=context)
            break
        except (OSError, http.client.HTTPException):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    config.write_text(json.dumps({**data, "tls_pem": str(pem), "webhook_port": free_port()}))
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while 'reloads_total{result="error"} 1' not in get(ports[1], "/metrics")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    assert reply.status == 200
    assert post(ports[0], fresh_batch(EVENTS, 1)[0], context=context).status == 200


def test_an_invalid_configuration_exits_2_and_a_taken_port_exits_1(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"webhook_port": 9765}))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = tmp_path / "config.json"
        write(config, webhook_port=taken.getsockname()[1])
        invalid = start(bad)
        busy = start(config, "--bind-wait", "1")
        _, invalid_err = invalid.communicate(timeout=20)
        _, busy_err = busy.communicate(timeout=20)

    assert invalid.returncode == 2
    assert "missing keys" in invalid_err
    assert busy.returncode == 1
    assert "in use: trying again" in busy_err
    assert "cannot start" in busy_err
