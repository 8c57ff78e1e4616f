"""The ``python3 -m falco_forwarder`` entry point: start, serve, stop on SIGTERM with status 0."""

import json
import logging
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from forwarder_helpers import (
    LOOPBACK,
    SinkFactory,
    config_dict,
    encode,
    falco_alert,
    post_alert,
    request,
    sink_dict,
    wait_for,
)

from falco_forwarder.cli import main

SRC = Path(__file__).parents[3] / "src"


def write_config(tmp_path: Path, port: int = 0, sinks: list | None = None) -> Path:
    path = tmp_path / "config.json"
    data = config_dict(tmp_path / "spool", sinks or [])
    data["listen"]["port"] = port
    path.write_text(json.dumps(data))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def test_runs_until_sigterm(
    tmp_path: Path,
    make_sink: SinkFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="falco_forwarder")
    sink = make_sink()
    config = write_config(tmp_path, sinks=[sink_dict("s", sink.url())])
    monkeypatch.setattr(sys, "argv", ["falco_forwarder", "--config", str(config)])
    previous = signal.getsignal(signal.SIGTERM)
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            wait_for(lambda: "listening on" in caplog.text)
            port = int(re.findall(r"listening on 127\.0\.0\.1:(\d+)", caplog.text)[0])
            assert request(port, "GET", "/healthz")[0] == 200
            assert post_alert(port, encode(falco_alert())) == 200
            wait_for(lambda: len(sink.received) == 1)
        except BaseException as e:  # reported in the main thread
            failures.append(e)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=drive)
    driver.start()
    with pytest.raises(SystemExit) as stopped:
        runpy.run_module("falco_forwarder", run_name="__main__")
    driver.join()

    assert failures == []
    assert stopped.value.code == 0
    assert "received SIGTERM, stopping" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored


def test_invalid_config_exits_2(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "config.json"
    path.write_text("{}")

    assert main(["--config", str(path)]) == 2
    assert "invalid configuration: config is missing" in caplog.text


def test_port_in_use_exits_1(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        assert main(["--config", str(write_config(tmp_path, taken.getsockname()[1]))]) == 1
    assert "cannot start" in caplog.text


def test_python_m_entry_point(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "falco_forwarder", "--config", str(write_config(tmp_path, port))],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _healthy(port) or process.poll() is not None)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"listening on 127.0.0.1:{port}" in stderr


def _healthy(port: int) -> bool:
    try:
        return request(port, "GET", "/healthz")[0] == 200
    except OSError:
        return False
