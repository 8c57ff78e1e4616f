"""The alert log directory, no rotation by the charm, and the validate-rules action."""

from __future__ import annotations

import ops
import pytest
from charm_pod import DRY_RUN_PREFIX, IMAGE_FALCO_YAML, Calls, falco_container, peers, pod
from ops import testing

MIB = 1024 * 1024


def update_status(ctx, fs, **config) -> testing.State:
    state = testing.State(
        config=config, containers=pod(falco_container(fs)), relations={peers()}, leader=True
    )
    return ctx.run(ctx.on.update_status(), state)


def test_the_alert_log_directory_is_made_private_before_falco_starts(ctx, falco_fs):
    update_status(ctx, falco_fs)

    log_dir = falco_fs / "alerts" / "log"
    assert log_dir.is_dir()
    assert log_dir.stat().st_mode & 0o777 == 0o700


def test_the_charm_never_rotates_or_signals_falco(ctx, falco_fs, calls: Calls):
    """The forwarder rotates the log by rename: Falco reopens its file for every alert."""
    running = update_status(ctx, falco_fs)
    log = falco_fs / "alerts" / "log" / "falco.log"
    with log.open("wb") as handle:
        handle.truncate(2048 * MIB)

    ctx.run(ctx.on.update_status(), running)

    assert calls.signals == []
    assert not [a for a in ctx.exec_history.get("falco", []) if a.command[0] != "/usr/bin/falco"]
    assert log.stat().st_size == 2048 * MIB


def validate(ctx, fs, dry_run: testing.Exec | None = None, **config) -> testing.State:
    state = testing.State(
        config=config, containers=pod(falco_container(fs, dry_run=dry_run)), leader=True
    )
    return ctx.run(ctx.on.action("validate-rules"), state)


def test_validate_rules_reports_ok_and_applies_nothing(ctx, falco_fs):
    validate(
        ctx,
        falco_fs,
        custom_rules="- list: allowed_namespaces\n  items: [ci]\n  override:\n    items: append\n",
    )

    assert ctx.action_results == {"valid": "true", "output": "Falco initialized\n"}
    assert (falco_fs / "etc-falco" / "falco.yaml").read_text() == IMAGE_FALCO_YAML  # untouched
    assert (falco_fs / "etc-falco" / "staging" / "falco.yaml").exists()


def test_validate_rules_returns_falco_errors(ctx, falco_fs):
    stderr = "Error: rules.d/custom_rules.yaml: Invalid\nLOAD_ERR_VALIDATE (x): boom\n"
    rejecting = testing.Exec(DRY_RUN_PREFIX, return_code=1, stderr=stderr)

    with pytest.raises(testing.ActionFailed, match="rejected by Falco: LOAD_ERR_VALIDATE"):
        validate(ctx, falco_fs, dry_run=rejecting)

    assert ctx.action_results == {"valid": "false", "errors": stderr}


def test_validate_rules_reports_python_check_errors(ctx, falco_fs):
    with pytest.raises(testing.ActionFailed, match="custom_rules: YAML error at line 3"):
        validate(ctx, falco_fs, custom_rules="- rule: x\n  desc: [\n")

    assert ctx.action_results is not None
    assert ctx.action_results["valid"] == "false"


def test_validate_rules_without_the_plugin_bundle(ctx, falco_fs, charm_root):
    (charm_root / "plugins" / "libk8saudit.so").unlink()

    with pytest.raises(testing.ActionFailed, match=r"charm package lacks libk8saudit\.so"):
        validate(ctx, falco_fs)


def test_validate_rules_when_falco_cannot_run(ctx, falco_fs):
    state = testing.State(containers=pod(falco_container(falco_fs, can_connect=False)))

    with pytest.raises(testing.ActionFailed, match="could not run the check"):
        ctx.run(ctx.on.action("validate-rules"), state)


def test_a_service_that_fails_to_start_is_a_status_not_a_traceback(
    ctx, falco_fs, monkeypatch, caplog
):
    task_log = "2026-11-27T05:07:27Z [falco] Error: could not load plugin libk8saudit.so"
    change = ops.pebble.Change.from_dict(
        {
            "id": "9",
            "kind": "restart",
            "summary": "Restart service falco",
            "status": "Error",
            "tasks": [
                {
                    "id": "10",
                    "kind": "start",
                    "summary": "Start service falco",
                    "status": "Error",
                    "log": [task_log],
                    "progress": {"label": "", "done": 1, "total": 1},
                    "spawn-time": "2026-11-27T05:07:26Z",
                }
            ],
            "ready": True,
            "err": "cannot perform the following tasks:\n- Start service falco (exited quickly)",
            "spawn-time": "2026-11-27T05:07:26Z",
        }
    )

    restart = ops.Container.restart

    def falco_exits_at_once(self: ops.Container, *names: str) -> None:
        if self.name == "falco":
            raise ops.pebble.ChangeError(change.err or "", change)
        restart(self, *names)

    monkeypatch.setattr(ops.Container, "restart", falco_exits_at_once)
    container = falco_container(falco_fs)

    out = ctx.run(
        ctx.on.pebble_ready(container),
        testing.State(containers=pod(container), relations={peers()}, leader=True),
    )

    # One line in the status; the whole change, with Falco's own words, in the debug log.
    assert out.unit_status == testing.WaitingStatus(
        "falco container: starting falco failed: Start service falco (exited quickly); will retry"
    )
    assert task_log in caplog.text
