"""The Pebble adapter on its own, against Scenario's Pebble: every write only when needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops import testing
from pebble_box import workload

from workload import WorkloadError

LAYER = {
    "summary": "app",
    "services": {
        "app": {"override": "replace", "command": "/bin/app --fast", "startup": "enabled"}
    },
}
CHECKED = {
    **LAYER,
    "checks": {"up": {"override": "replace", "level": "alive", "http": {"url": "http://x/"}}},
}


def test_push_if_changed_writes_only_a_different_content(tmp_path: Path):
    with workload(tmp_path) as (box, changes):
        assert box.push_if_changed("/data/a.conf", "one", permissions=0o600) is True
        assert box.push_if_changed("/data/a.conf", b"one") is False
        assert box.push_if_changed("/data/a.conf", "two") is True
        assert box.read("/data/a.conf") == b"two"
    assert changes == ["push", "push"]


def test_missing_files_read_as_none(tmp_path: Path):
    with workload(tmp_path) as (box, _):
        assert box.read("/data/none") is None


def test_remove_if_present_and_ensure_dir(tmp_path: Path):
    with workload(tmp_path) as (box, _):
        box.push_if_changed("/data/x", "x")
        assert box.remove_if_present("/data/x") is True
        assert box.remove_if_present("/data/x") is False
        box.ensure_dir("/data/a/b")
        box.ensure_dir("/data/a/b")
    assert (tmp_path / "a" / "b").is_dir()
    assert not (tmp_path / "x").exists()


def test_sync_tree_pushes_only_when_the_manifest_or_a_file_is_missing(tmp_path: Path):
    files = {"/data/lib/one.so": b"1", "/data/lib/two.so": b"2"}
    with workload(tmp_path) as (box, changes):
        assert box.sync_tree(files, "m1\n", manifest_path="/data/lib/.manifest") is True
        assert box.sync_tree(files, "m1\n", manifest_path="/data/lib/.manifest") is False
        (tmp_path / "lib" / "two.so").unlink()
        assert box.sync_tree(files, "m1\n", manifest_path="/data/lib/.manifest") is True
        assert box.sync_tree(files, "m2\n", manifest_path="/data/lib/.manifest") is True
    assert changes.count("push") == 9
    assert (tmp_path / "lib" / "two.so").read_bytes() == b"2"


def test_ensure_service_restarts_only_for_a_new_definition(tmp_path: Path):
    with workload(tmp_path) as (box, changes):
        assert box.ensure_service(LAYER) is True
        assert box.is_running()
        assert box.ensure_service(LAYER) is False
        changed = {
            **LAYER,
            "services": {"app": {**LAYER["services"]["app"], "command": "/bin/app"}},
        }
        assert box.ensure_service(changed) is True
    assert changes == ["restart", "restart"]


def test_new_checks_alone_replan_without_a_restart(tmp_path: Path):
    with workload(tmp_path) as (box, changes):
        box.ensure_service(LAYER)
        assert box.ensure_service(CHECKED) is False
    assert changes == ["restart", "replan"]


def test_a_stopped_service_is_started(tmp_path: Path):
    with workload(tmp_path) as (box, changes):
        box.ensure_service(LAYER)
        box.container.stop("app")
        assert not box.is_running()
        assert box.ensure_service(LAYER) is True
        assert box.is_running()
    assert changes == ["restart", "start"]


def test_restart_restarts_the_service(tmp_path: Path):
    with workload(tmp_path) as (box, changes):
        box.ensure_service(LAYER)
        box.restart()
    assert changes == ["restart", "restart"]


def test_a_command_failure_is_a_result(tmp_path: Path):
    failing = testing.Exec(["check"], return_code=3, stdout="out", stderr="bad")
    with workload(tmp_path, execs={failing}) as (box, _):
        result = box.run(["check", "--all"], timeout=5)
    assert (result.exit_code, result.output) == (3, "out\nbad")


def test_an_unreachable_container_is_one_workload_error(tmp_path: Path):
    with workload(tmp_path, can_connect=False) as (box, _):
        assert not box.can_connect()
        assert not box.is_running()
        with pytest.raises(WorkloadError, match="reading /data/a failed: Cannot connect"):
            box.push_if_changed("/data/a", "x")
