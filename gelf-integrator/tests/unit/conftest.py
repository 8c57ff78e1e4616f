"""Fixtures for the integrator's tests: a fake Graylog on loopback, always stopped."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_graylog import FakeGraylog

GraylogFactory = Callable[..., FakeGraylog]


@pytest.fixture
def make_graylog() -> Iterator[GraylogFactory]:
    started: list[FakeGraylog] = []

    def make(*args: Any, **kwargs: Any) -> FakeGraylog:
        graylog = FakeGraylog(*args, **kwargs)
        started.append(graylog)
        return graylog

    yield make
    for graylog in started:
        graylog.stop()


@pytest.fixture(params=["7.1.7+3b6c2a1", "6.3.15+a1f0c44"], ids=["graylog7", "graylog6"])
def graylog(request: pytest.FixtureRequest, make_graylog: GraylogFactory) -> FakeGraylog:
    """The fake Graylog in both supported major versions."""
    return make_graylog(version=request.param)


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1, and its PEM."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl CLI is needed to make a test certificate")
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
