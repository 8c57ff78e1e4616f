"""What the alert-log benchmarks share: forwarders, receivers and Falco's appends.

Every forwarder and every receiver runs as a process of its own (`Forwarder`, `Receiver`);
the benchmark's own process only appends alerts, as Falco does, and reads the results.
"after" is this tree's forwarder (``src/``); "before" is another tree's (``--before``: a
directory holding ``falco_forwarder``, or a git ref whose ``src/`` is exported to a temporary
directory; default ``main``). On main as shipped both are main's: the ratios are then about 1.
"""

from __future__ import annotations

import atexit
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from sample_alert import alert

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# The path each format is posted to (the receiver reads any of them).
PATHS = {"falco-json": "/", "gelf": "/gelf", "loki": "/loki/api/v1/push", "otlp-json": "/v1/logs"}
_SAMPLE = re.compile(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", re.MULTILINE)


def source(before: str) -> Path:
    """The ``src`` directory of the "before" forwarder: ``before`` itself, or a git ref's."""
    if (Path(before) / "falco_forwarder").is_dir():
        return Path(before)
    return tree_of(before, "src/falco_forwarder") / "src"


def tree_of(ref: str, *paths: str) -> Path:
    """``paths`` (default: all) of git ref ``ref`` in a directory removed at exit."""
    target = Path(tempfile.mkdtemp(prefix="bench-before-"))
    atexit.register(shutil.rmtree, target, True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, *paths], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _reap(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


class Receiver:
    """``benchmarks/receiver.py`` as a process of its own."""

    def __init__(self, delay: float = 0.0, status: int = 202, trickle: bool = False):
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("receiver.py")),
                *("--delay", str(delay), "--status", str(status)),
                *(["--trickle"] if trickle else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        atexit.register(_reap, self.process)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def url(self, fmt: str = "falco-json") -> str:
        """Where a sink of format ``fmt`` posts."""
        return f"http://{HOST}:{self.port}{PATHS[fmt]}"

    def _call(self, method: str, path: str) -> bytes:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            connection.request(method, path, b"")
            return connection.getresponse().read()
        finally:
            connection.close()

    def count(self) -> tuple[int, int]:
        """(distinct alerts, alerts received in all)."""
        answer = json.loads(self._call("GET", "/count"))
        return answer["distinct"], answer["total"]

    def arrivals(self) -> list[tuple[int, float]]:
        """Every alert received: (id, monotonic arrival time), in order."""
        return [(number, at) for number, at in json.loads(self._call("GET", "/stats"))]

    def down(self, down: bool = True) -> None:
        """Answer 503 to alerts (an outage), or stop doing so."""
        self._call("POST", "/down" if down else "/up")

    def stop(self) -> None:
        """End the process."""
        _reap(self.process)


class Forwarder:
    """``python -m falco_forwarder`` from ``src`` as its own process."""

    def __init__(self, src: Path, config: Path, port: int):
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "falco_forwarder", "--config", str(config)],
            env={**os.environ, "PYTHONPATH": str(src)},
            stderr=subprocess.DEVNULL,
        )
        atexit.register(_reap, self.process)  # a benchmark that fails leaves none behind
        wait(lambda: self.healthy() or self.process.poll() is not None, 30, "the forwarder")
        if self.process.poll() is not None:
            raise RuntimeError(f"the forwarder exited with {self.process.returncode}")

    def healthy(self) -> bool:
        """Whether /healthz answers 200."""
        try:
            connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """Every series of /metrics, by name and labels as printed."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
        return {name: float(value) for name, value in _SAMPLE.findall(text)}

    def rss_bytes(self) -> int:
        """The process's resident memory."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """CPU time used so far (user and system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 30) -> float:
        """SIGTERM, and wait for the stop (killed after ``timeout``); the seconds it took."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return time.monotonic() - started

    def reload(self) -> None:
        """SIGHUP: read the configuration file again."""
        self.process.send_signal(signal.SIGHUP)


def config(
    tmp: Path,
    sinks: list[tuple[str, str, str]],
    port: int,
    retention: int = 512 << 20,
    segment: int = 32 << 20,
) -> Path:
    """A forwarder configuration (the format both trees read), the alert log in ``tmp/log``.

    ``sinks`` are (name, format, url).
    """
    (tmp / "log").mkdir(parents=True, exist_ok=True)
    data = {
        "listen": {"host": HOST, "port": port},
        "alert_log": {
            "file": str(tmp / "log" / "falco.log"),
            "state_dir": str(tmp / "state"),
            "retention_bytes": retention,
            "segment_bytes": segment,
        },
        "juju": {"model": "m", "model_uuid": "u", "application": "falco-k8s", "unit": "f/0"},
        "retry": {"initial_seconds": 0.1, "max_seconds": 1.0, "timeout_seconds": 5.0},
        "sinks": [{"name": name, "format": fmt, "url": url} for name, fmt, url in sinks],
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(data))
    return path


def append(log: Path, i: int) -> int:
    """Falco's file_output with keep_alive false: open, write one line, close; the bytes."""
    line = alert(i) + b"\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return len(line)


def write_log(log: Path, count: int, start: int = 0) -> None:
    """``count`` alerts written at once (a backlog)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as stream:
        for i in range(start, start + count):
            stream.write(alert(i) + b"\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait(condition: Any, timeout: float, what: str, every: float = 0.02) -> None:
    """Poll ``condition`` until true; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


def scratch(prefix: str) -> Path:
    """A temporary directory removed at exit."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    atexit.register(shutil.rmtree, path, True)
    return path
