"""Fixtures that start real forwarders and sinks on loopback and always stop them."""

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.fake_cos_receivers import Receiver
from forwarder_helpers import ForwarderFactory, SinkFactory, SinkServer, config_dict

from falco_forwarder.config import ForwarderConfig
from falco_forwarder.forwarder import Forwarder


@pytest.fixture
def alerts_dir(tmp_path: Path) -> Path:
    """The shared storage: the alert log in ``log/``, the checkpoints in ``state/``."""
    return tmp_path / "alerts"


@pytest.fixture
def make_sink() -> Iterator[SinkFactory]:
    started: list[SinkServer] = []

    def make(*args: Any, **kwargs: Any) -> SinkServer:
        sink = SinkServer(*args, **kwargs)
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    """Loki and OTLP receivers a test starts, stopped at its end."""
    started: list[Receiver] = []
    yield started
    for receiver in started:
        if receiver._server is not None:
            receiver.stop()


@pytest.fixture
def make_forwarder(alerts_dir: Path) -> Iterator[ForwarderFactory]:
    running: list[Forwarder] = []

    def make(sinks: list[dict[str, Any]], **overrides: Any) -> Forwarder:
        forwarder = Forwarder(
            ForwarderConfig.from_dict(config_dict(alerts_dir, sinks, **overrides))
        )
        forwarder.start()
        running.append(forwarder)
        return forwarder

    yield make
    for forwarder in running:
        forwarder.close()


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1, and its PEM."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert.read_text()
