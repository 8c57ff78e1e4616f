"""A full alert-log volume and a read-only state directory, on a real 1 MiB tmpfs.

The scenario (small_volume.py) runs in a private mount namespace; where this machine allows
none (no unshare, or unprivileged user namespaces refused, as on Ubuntu 24.04 runners), the
test is skipped with the reason.
"""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from forwarder_helpers import SinkFactory

SCENARIO = Path(__file__).with_name("small_volume.py")
SRC = Path(__file__).resolve().parents[3] / "src"


def in_namespace(tmp_path: Path) -> list[str]:
    """The command prefix that runs in a private mount namespace, or skip the test."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("mount") is None:
        pytest.skip("unshare and mount (util-linux) are needed for a volume of its own")
    prefix = [unshare, "--mount"] if os.geteuid() == 0 else [unshare, "--map-root-user", "--mount"]
    probe = tmp_path / "probe"
    probe.mkdir()
    tried = subprocess.run(
        [*prefix, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
        capture_output=True,
        text=True,
        check=False,
    )
    if tried.returncode != 0:
        pytest.skip(f"no private mount namespace here: {tried.stderr.strip()}")
    return prefix


def run_scenario(tmp_path: Path, sink_url: str) -> dict[str, Any]:
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [*in_namespace(tmp_path), sys.executable, str(SCENARIO), str(SRC), str(work), sink_url],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def numbers(bodies: list[bytes]) -> Counter[int]:
    return Counter(json.loads(body)["output_fields"]["n"] for body in bodies)


def test_a_full_volume_neither_stops_the_forwarder_nor_costs_an_alert_once_it_runs(
    tmp_path: Path, make_sink: SinkFactory
):
    sink = make_sink()

    result = run_scenario(tmp_path, sink.url())

    assert result["refused_before"] > 0  # the volume was full: Falco lost those
    assert result["started"] is True  # no exit on ENOSPC, so no restart loop
    assert result["errors_at_start"] == {"new": "No space left on device"}
    assert result["room_made"]  # rotation and retention ran on the full volume
    assert len(result["written_after"]) == 40  # Falco writes again
    assert result["all_settled"]
    assert result["errors_with_room"] == {"new": ""}  # saved again
    received = numbers(sink.bodies)
    before = set(result["written_before"])
    # Each line the log held at start is delivered or counted (the log was 4x the cap), a
    # line Falco's write left cut short included; the alert in flight when retention took
    # its segment may be both (the sink got it, its checkpoint never moved past it).
    delivered_before = sum(received[n] for n in before)
    counted = result["dropped_retention"] + result["dropped_malformed"]
    lines = len(before) + result["partial_before"]
    assert lines <= delivered_before + counted <= lines + 1
    assert all(received[n] == 1 for n in result["written_after"])


def test_a_state_directory_turned_read_only_keeps_delivering_without_repeats(
    tmp_path: Path, make_sink: SinkFactory
):
    sink = make_sink()

    result = run_scenario(tmp_path, sink.url())

    assert result["all_settled_read_only"]
    assert len(result["written_read_only"]) == 20
    assert all(numbers(sink.bodies)[n] == 1 for n in result["written_read_only"])
