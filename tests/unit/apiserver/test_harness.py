"""The harness itself: a missing build or a failed start is a clear error, and stop is clean."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import kube_apiserver
import pytest
from kube_apiserver import Etcd, HarnessError, running_kube_apiserver


def test_a_missing_binary_is_named_with_the_build_step(
    etcd: Etcd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(kube_apiserver, "KUBE_APISERVER", tmp_path / "kube-apiserver")

    with (
        pytest.raises(HarnessError, match="kube-apiserver is missing: run tox, or tools/install"),
        running_kube_apiserver(etcd, tmp_path),
    ):
        pass


def test_an_apiserver_that_exits_is_reported_with_its_log(etcd: Etcd, tmp_path: Path):
    with (
        pytest.raises(HarnessError, match=r"(?s)kube-apiserver exited with 1:.*no-such-flag"),
        running_kube_apiserver(etcd, tmp_path, args=["--no-such-flag"]),
    ):
        pass


def test_stop_ends_the_process_and_frees_the_port(etcd: Etcd, tmp_path: Path):
    with running_kube_apiserver(etcd, tmp_path) as server:
        port = urlsplit(server.url).port
        assert server.process.poll() is None

    assert server.process.returncode == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
