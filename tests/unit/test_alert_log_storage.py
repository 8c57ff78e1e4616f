"""The alert-log storage: a retention cap that cannot fit is refused, a filling volume is said."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from charm_pod import falco_container, pod
from ops import testing

from constants import MIB
from sinks._alert_log_storage import (
    Volume,
    largest_size,
    measure,
    retention_problem,
    space_note,
)

GIB = 1 << 30


def test_the_default_cap_fits_the_minimum_storage():
    assert retention_problem(512, Volume(size=GIB, free=GIB)) == ""


def test_a_cap_that_cannot_fit_names_the_option_the_storage_and_the_largest_that_fits():
    volume = Volume(size=GIB, free=GIB)

    problem = retention_problem(900, volume)

    assert problem.startswith("alert_log_retention_mb: 900 does not fit the 1.0 GiB alert-log")
    fitting = int(problem.rsplit("at most ", 1)[1])
    assert retention_problem(fitting, volume) == ""
    assert retention_problem(fitting + 1, volume) != ""
    assert largest_size(fitting) <= 0.9 * GIB  # the cap, a segment, and a tenth free


def test_storage_too_small_for_the_smallest_cap_asks_for_larger_storage():
    assert retention_problem(16, Volume(size=16 * MIB, free=16 * MIB)).endswith(
        "attach larger storage"
    )


@pytest.mark.parametrize(
    ("free", "note"),
    [
        (GIB // 2, ""),
        (GIB // 10 + 1, ""),
        (50 * MIB, "alert-log storage 95% full (50 MiB free): Falco loses alerts once it is full"),
    ],
)
def test_a_nearly_full_storage_is_a_note(free: int, note: str):
    assert space_note(Volume(size=GIB, free=free)) == note


def test_measure_reads_the_filesystem_the_storage_is(tmp_path: Path):
    stats = os.statvfs(tmp_path)

    volume = measure(tmp_path)

    assert volume is not None
    assert volume.size == stats.f_blocks * stats.f_frsize
    assert measure(tmp_path / "not-there") is None


def test_a_cap_larger_than_the_attached_storage_blocks_and_keeps_the_forwarders_config(
    ctx: testing.Context, falco_fs: Path
):
    storage = testing.Storage("alert-log")
    volume = measure(storage.get_filesystem(ctx))
    assert volume is not None
    too_big = volume.size // MIB + 1
    if too_big > 1_000_000:
        pytest.skip("this machine's temporary storage is larger than the option's maximum")
    state = testing.State(
        config={"http_output": "https://siem.example.com/falco"},
        containers=pod(falco_container(falco_fs)),
        storages={storage},
        leader=True,
    )
    before = ctx.run(ctx.on.config_changed(), state)
    config = Path(before.get_container("forwarder").mounts["config"].source) / "config.json"
    written = json.loads(config.read_text())

    out = ctx.run(
        ctx.on.config_changed(),
        dataclasses.replace(before, config={**before.config, "alert_log_retention_mb": too_big}),
    )

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(f"alert_log_retention_mb: {too_big} does not fit")
    assert "alert-log storage" in out.unit_status.message
    assert json.loads(config.read_text()) == written  # the forwarder keeps its retention
