"""The integration suite's own parts that run without Juju: deploy arguments and the receiver.

The "Deploy from source" how-to must deploy exactly what the integration fixture
deploys: both are checked against the `juju` command line jubilant really builds, recorded by a
stand-in `juju` executable (it models only the CLI's argv; jubilant 1.14 `Juju.deploy`).
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jubilant
import pytest
from alert_receiver import GELF_PATH
from deployment import ROOT, deploy, oci_resources
from inside_pod import (
    DISALLOWED_USER_RULE,
    audit_batch,
    json_lines,
    marker_names,
    raised_for,
    receiver_command,
)

HOW_TO = ROOT / "docs" / "how-to" / "deploy-from-source.md"


def how_to_deploy_from_source() -> list[list[str]]:
    """The shell commands of the how-to's "Deploy from source" section, split into words."""
    section = HOW_TO.read_text().split("## Deploy from source", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```shell\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


@pytest.fixture
def recording_juju(tmp_path: Path) -> tuple[jubilant.Juju, Path]:
    """A jubilant client whose `juju` only records its arguments, one JSON list per call."""
    record = tmp_path / "argv.jsonl"
    stub = tmp_path / "juju"
    stub.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    stub.chmod(0o755)
    return jubilant.Juju(cli_binary=stub), record


def test_the_how_to_deploys_from_source_as_the_integration_fixture(
    recording_juju: tuple[jubilant.Juju, Path], tmp_path: Path
):
    juju, record = recording_juju
    charm = tmp_path / "falco-k8s_ubuntu@24.04-amd64.charm"

    deploy(juju, charm)

    fixture = json.loads(record.read_text().splitlines()[-1])
    pack, how_to = how_to_deploy_from_source()
    assert pack == ["charmcraft", "pack"]
    assert how_to[:3] == ["juju", "deploy", "./falco-k8s_*.charm"]
    # The app name is the charm's own in both; then the same resources and flags, in any order.
    assert fixture[:3] == ["deploy", str(charm), "falco-k8s"]
    assert sorted(how_to[3:]) == sorted(fixture[3:])


def test_deploy_resources_are_the_pinned_upstream_images():
    resources = oci_resources()

    assert resources == {
        "falco-image": "falcosecurity/falco:0.44.1",
        "forwarder-image": "ubuntu/python:3.12-24.04_stable",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The receiver started exactly as its Pebble service runs it, on a free loopback port."""
    port, store = free_port(), tmp_path / "received" / "bodies.jsonl"
    process = subprocess.Popen(receiver_command(port, str(store), sys.executable))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url, store
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_receiver_stores_each_body_before_answering(receiver: tuple[str, Path]):
    url, store = receiver

    assert post(f"{url}/falco", b'{"rule": "a"}') == 200
    assert post(f"{url}{GELF_PATH}", b'{"version": "1.1"}') == 202

    assert json_lines(store.read_text().splitlines()) == [
        {"path": "/falco", "body": '{"rule": "a"}'},
        {"path": "/gelf", "body": '{"version": "1.1"}'},
    ]


def test_partial_lines_are_skipped_not_fatal():
    whole = json.dumps({"rule": DISALLOWED_USER_RULE, "output": "x" * 5000})
    lines = [whole[:4096], whole[4096:], whole, "not json", "[1, 2]"]

    assert json_lines(lines) == [json.loads(whole)]


def test_each_marker_is_told_apart_from_the_others():
    names = marker_names(12)
    alerts = [
        {"rule": DISALLOWED_USER_RULE, "output": f"user=mallory target={names[10]}/secrets"},
        {"rule": "Other Rule", "output": f"target={names[1]}/secrets"},
    ]

    assert len(set(names)) == 12
    assert raised_for(alerts, names) == {names[10]}
    assert all(names[1] not in other for other in names[10:])


def test_audit_batch_is_one_event_per_name():
    names = marker_names(3)
    batch = audit_batch(names)

    assert batch["kind"] == "EventList"
    items = batch["items"]
    assert isinstance(items, list)
    assert [item["objectRef"]["name"] for item in items] == names
