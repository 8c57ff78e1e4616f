"""The ``python3 -m falco_forwarder`` entry point: serve, reload on SIGHUP, stop on SIGTERM."""

import contextlib
import logging
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from forwarder_helpers import (
    LOOPBACK,
    SinkFactory,
    append_line,
    encode,
    falco_alert,
    free_port,
    metric,
    request,
    sink_dict,
    wait_for,
    write_config,
)

from falco_forwarder.cli import main
from falco_forwarder.metrics import CONFIG_RELOADS as RELOADS

SRC = Path(__file__).parents[3] / "src"


def log_file(directory: Path) -> Path:
    """The alert log of the configuration `write_config` writes in ``directory``."""
    return directory / "alerts" / "log" / "falco.log"


def _to_process(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)


def _to_this_thread(sig: signal.Signals) -> None:
    """The kernel may give a process signal to any thread: force a thread other than main."""
    signal.pthread_kill(threading.get_ident(), sig)


@pytest.mark.parametrize("send", [_to_process, _to_this_thread], ids=["process", "other-thread"])
def test_reloads_on_sighup_and_runs_until_sigterm(
    send: Callable[[signal.Signals], None],
    tmp_path: Path,
    make_sink: SinkFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="falco_forwarder")
    first, second = make_sink(), make_sink()
    sinks = [sink_dict("first", first.url())]
    config = write_config(tmp_path, sinks)
    monkeypatch.setattr(sys, "argv", ["falco_forwarder", "--config", str(config)])
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    # Any Python-handled signal reaches the wakeup socket; one the forwarder does not handle
    # must neither stop nor reload it.
    stray = signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            wait_for(lambda: "endpoint on" in caplog.text)
            port = int(re.findall(r"endpoint on 127\.0\.0\.1:(\d+)", caplog.text)[0])
            assert request(port, "GET", "/healthz")[0] == 200
            append_line(log_file(tmp_path), encode(falco_alert(0)))
            wait_for(lambda: len(first.received) == 1)
            write_config(tmp_path, [*sinks, sink_dict("second", second.url())])
            send(signal.SIGUSR1)
            send(signal.SIGHUP)
            wait_for(lambda: metric(port, RELOADS, result="ok") == 1)
            append_line(log_file(tmp_path), encode(falco_alert(1)))
            # A new sink starts at the oldest alert kept: it gets both.
            wait_for(lambda: len(first.received) == 2 and len(second.received) == 2)
        except BaseException as e:  # reported in the main thread
            failures.append(e)
        finally:
            send(signal.SIGTERM)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        with pytest.raises(SystemExit) as stopped:
            runpy.run_module("falco_forwarder", run_name="__main__")
    finally:
        driver.join()
        signal.signal(signal.SIGUSR1, stray)

    assert failures == []
    assert stopped.value.code == 0
    assert caplog.text.count("received SIGHUP, reloading") == 1
    assert f"received SIGHUP, reloading {config}" in caplog.text
    assert "received SIGTERM, stopping" in caplog.text
    assert {sig: signal.getsignal(sig) for sig in previous} == previous  # handlers restored


def test_a_stop_signal_right_at_startup_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="falco_forwarder")
    config = write_config(tmp_path, [])
    install = signal.signal
    sent: list[signal.Signals] = []

    def install_then_signal(sig: signal.Signals, handler: Any) -> Any:
        previous = install(sig, handler)
        if sig is signal.SIGTERM and not sent:  # at once, before main() does anything else
            sent.append(sig)
            os.kill(os.getpid(), sig)
        return previous

    monkeypatch.setattr(signal, "signal", install_then_signal)
    # Were it lost, main() would serve on: end it after 5 s rather than hang the suite.
    watchdog = threading.Timer(5, lambda: os.kill(os.getpid(), signal.SIGINT))
    watchdog.start()
    started = time.monotonic()
    try:
        assert main(["--config", str(config)]) == 0
    finally:
        watchdog.cancel()
    assert time.monotonic() - started < 5
    assert "received SIGTERM, stopping" in caplog.text


def test_invalid_config_exits_2(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "config.json"
    path.write_text("{}")

    assert main(["--config", str(path)]) == 2
    assert "invalid configuration: config is missing" in caplog.text


def test_port_in_use_exits_1(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        config = write_config(tmp_path, [], port=taken.getsockname()[1])
        assert main(["--config", str(config)]) == 1
    assert "cannot start" in caplog.text


def test_an_unusable_state_directory_still_serves_and_delivers(
    tmp_path: Path, make_sink: SinkFactory
):
    """No restart loop: the checkpoints live in memory, and the log says why."""
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "state").write_text("a file where the checkpoints belong")
    sink, port = make_sink(), free_port()
    with forwarder_process(write_config(tmp_path, [sink_dict("first", sink.url())], port)) as (
        process
    ):
        wait_for(lambda: _healthy(port) or process.poll() is not None)
        body = encode(falco_alert())
        append_line(log_file(tmp_path), body)
        wait_for(lambda: process.poll() is not None or sink.bodies == [body])
        stderr = stop(process)
    assert process.returncode == 0, stderr
    assert "sink first: cannot open its checkpoint" in stderr


def test_python_m_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path, make_sink: SinkFactory):
    port = free_port()
    first, second = make_sink(), make_sink()
    sinks = [sink_dict("first", first.url())]
    with forwarder_process(write_config(tmp_path, sinks, port)) as process:
        wait_for(lambda: _healthy(port) or process.poll() is not None)
        write_config(tmp_path, [*sinks, sink_dict("second", second.url())], port)
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: process.poll() is not None or metric(port, RELOADS, result="ok") == 1)
        body = encode(falco_alert())
        append_line(log_file(tmp_path), body)
        wait_for(lambda: first.bodies == [body] and second.bodies == [body])
        stderr = stop(process)
    assert process.returncode == 0, stderr
    assert f"endpoint on 127.0.0.1:{port}" in stderr
    assert "received SIGHUP, reloading" in stderr
    assert "sink second added" in stderr


@contextlib.contextmanager
def forwarder_process(config: Path) -> Iterator[subprocess.Popen[str]]:
    """``python3 -m falco_forwarder`` on ``config``, killed at the end if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "falco_forwarder", "--config", str(config)],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM a forwarder that must still run; its log."""
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=10)[1]


def _healthy(port: int) -> bool:
    try:
        return request(port, "GET", "/healthz")[0] == 200
    except OSError:
        return False
