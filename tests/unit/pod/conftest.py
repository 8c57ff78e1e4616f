"""The pod under real Pebble: one shared root for both containers, and free ports."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "forwarder"))  # the loopback sinks

from forwarder_helpers import SinkFactory, SinkServer, free_port
from real_pebble import PEBBLE, Root

from constants import (
    FORWARDER_PORT,
    INTAKE_METRICS_PORT,
    K8SAUDIT_PORT,
    WEBHOOK_PORT,
    WEBSERVER_PORT,
)


@pytest.fixture
def root(tmp_path: Path) -> Root:
    """Both containers' files below one directory: the alert-log storage is one volume."""
    if not PEBBLE.is_file():
        pytest.fail(f"{PEBBLE} is missing: tox builds it with tools/install-pebble")
    pod_ports = (WEBSERVER_PORT, K8SAUDIT_PORT, FORWARDER_PORT, WEBHOOK_PORT, INTAKE_METRICS_PORT)
    ports = {port: free_port() for port in pod_ports}
    return Root(tmp_path / "pod", ports)


@pytest.fixture
def make_sink() -> Iterator[SinkFactory]:
    started: list[SinkServer] = []

    def make(*args: object, **kwargs: object) -> SinkServer:
        sink = SinkServer(*args, **kwargs)  # type: ignore[arg-type]
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()
