"""Falco's hot reload, confirmed from Falco's own /metrics (a stand-in on 127.0.0.1).

The two ways Falco 0.44.1 loses a change are reproduced with the stand-in: a change written in
its restart window, and every change after one failed reload dry-run. In each, the charm either
sees Falco confirm the new files or restarts Falco through Pebble, and never reports the config
as applied while Falco's hashes disagree with what it wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from charm_pod import (
    ACTIVE,
    CHARM_RULES_TEXT,
    CI_RULE,
    Calls,
    active,
    falco_container,
    pod,
    with_container,
)
from fakes.fake_falco_metrics import FalcoMetrics
from ops import testing

RESTARTED = active("Falco restarted (missed hot reload)")
UNCONFIRMED = testing.WaitingStatus(
    "Falco reload unconfirmed: Falco restarted, not yet running the new config"
)
SILENT = testing.WaitingStatus(
    "Falco reload unconfirmed: Falco's /metrics has not answered since the last change"
)
NOT_ASKED = testing.WaitingStatus(
    "Falco reload unconfirmed: Falco has not reported the last change's files yet"
)
MEMORY_KEY = "unconfirmed-falco-change"


def deployed(ctx: testing.Context[Any], fs: Path) -> testing.State:
    container = falco_container(fs)
    # Juju gives every unit its peer relation: where it remembers an unconfirmed change.
    peers = testing.PeerRelation("falco-peers")
    state = testing.State(containers=pod(container), relations={peers}, leader=True)
    return ctx.run(ctx.on.pebble_ready(container), state)


def remembered(state: testing.State) -> str:
    [peers] = state.relations
    return peers.local_unit_data.get(MEMORY_KEY, "")


def reconfigure(ctx: testing.Context[Any], state: testing.State, **config: Any) -> testing.State:
    return ctx.run(ctx.on.config_changed(), dataclasses.replace(state, config=config))


def loaded_falco_yaml(metrics: FalcoMetrics) -> str:
    return (metrics.loaded_now() if metrics.follow else metrics.snapshot)["config"]["falco.yaml"]


def written_falco_yaml(fs: Path) -> str:
    return hashlib.sha256((fs / "etc-falco" / "falco.yaml").read_bytes()).hexdigest()


def test_a_reload_falco_confirms_is_applied_without_a_restart(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    calls.reset()

    out = reconfigure(ctx, out, minimum_priority="warning", custom_rules=CI_RULE)

    assert falco_metrics.requests >= 1
    assert calls.restarted == []
    assert out.unit_status == ACTIVE


def test_naming_and_renaming_the_cluster_is_a_dry_run_then_a_confirmed_hot_reload(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    """Falco names the cluster itself (falco.yaml): the same gate and reload as any option."""
    out = deployed(ctx, falco_fs)

    for name in ("prod-eu-1", "prod-eu-2"):
        calls.reset()
        ctx.exec_history.clear()
        out = reconfigure(ctx, out, cluster_name=name)

        assert "--dry-run" in ctx.exec_history["falco"][-1].command
        assert f"- cluster: {name}\n" in (falco_fs / "etc-falco" / "falco.yaml").read_text()
        assert loaded_falco_yaml(falco_metrics) == written_falco_yaml(falco_fs)
        assert calls.restarted == []
        assert out.unit_status == ACTIVE


def test_a_change_written_in_the_restart_window_is_applied_by_a_restart(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    # Falco is restarting its app for an earlier change: it read the config, its webserver is
    # down, and the watches are not back when the charm writes the next change.
    falco_metrics.miss_next_change(down_requests=3)
    calls.reset()

    out = reconfigure(ctx, out, minimum_priority="error")

    assert calls.restarted == ["falco:falco"]
    assert loaded_falco_yaml(falco_metrics) == written_falco_yaml(falco_fs)
    assert out.unit_status == RESTARTED


def test_a_change_after_a_failed_reload_dry_run_is_applied_by_a_restart(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    # Falco's debounce fired between two pushes: the half-written pair failed its dry-run, and
    # Falco 0.44.1 then ignores every later change until it restarts.
    falco_metrics.freeze()
    calls.reset()

    out = reconfigure(ctx, out, custom_rules=CI_RULE)

    assert calls.restarted == ["falco:falco"]
    assert "custom_rules.yaml" in falco_metrics.loaded_now()["rules"]
    assert loaded_falco_yaml(falco_metrics) == written_falco_yaml(falco_fs)
    assert out.unit_status == RESTARTED


def test_a_lost_change_is_caught_by_the_next_hook(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    out = reconfigure(ctx, out, minimum_priority="error")
    falco_metrics.snapshot = {"config": {"falco.yaml": "0" * 64}, "rules": {}}
    falco_metrics.follow = False  # what Falco runs is not what the charm wrote
    calls.reset()

    out = ctx.run(ctx.on.update_status(), out)

    assert calls.restarted == ["falco:falco"]
    assert out.unit_status == RESTARTED


def test_falcos_report_of_the_charms_own_rules_is_checked(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    loaded = falco_metrics.loaded_now()
    assert (
        loaded["rules"]["falco_k8s_rules.yaml"]
        == hashlib.sha256(CHARM_RULES_TEXT.encode()).hexdigest()
    )
    # Falco runs everything the charm wrote but an older copy of the charm's own rules.
    loaded["rules"]["falco_k8s_rules.yaml"] = "0" * 64
    falco_metrics.snapshot, falco_metrics.follow = loaded, False
    calls.reset()

    out = ctx.run(ctx.on.update_status(), out)

    assert calls.restarted == ["falco:falco"]
    assert out.unit_status == RESTARTED


def test_never_applied_while_falcos_hashes_disagree(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    falco_metrics.freeze()
    falco_metrics.stuck = True  # even restarted, Falco does not report the new files
    calls.reset()

    out = reconfigure(ctx, out, minimum_priority="error")

    assert calls.restarted == ["falco:falco"]
    assert out.unit_status == UNCONFIRMED
    assert loaded_falco_yaml(falco_metrics) != written_falco_yaml(falco_fs)


def test_a_falco_whose_metrics_never_answer_is_not_called_applied(
    ctx, falco_fs, falco_metrics: FalcoMetrics
):
    out = deployed(ctx, falco_fs)
    falco_metrics.down_requests = 10**6

    out = reconfigure(ctx, out, minimum_priority="error")

    assert out.unit_status == UNCONFIRMED


def test_a_falco_started_in_this_hook_is_not_asked(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    # It reads every file afresh as it starts; the next hook asks it.
    deployed(ctx, falco_fs)

    assert falco_metrics.requests == 0
    assert calls.restarted.count("falco:falco") == 1  # the start itself


def test_a_change_falco_never_confirmed_stays_waiting_while_falco_is_silent(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    falco_metrics.down_requests = 10**6  # Falco's webserver stops answering for good
    calls.reset()

    out = reconfigure(ctx, out, minimum_priority="error")
    assert out.unit_status == UNCONFIRMED
    assert calls.restarted == ["falco:falco"]
    calls.reset()

    for _ in range(3):
        out = ctx.run(ctx.on.update_status(), out)
        assert out.unit_status == SILENT
    assert calls.restarted == []  # Pebble's own checks restart a dead Falco
    assert remembered(out)


def test_waiting_clears_once_falco_reports_the_written_files(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    falco_metrics.down_requests = 10**6
    out = reconfigure(ctx, out, minimum_priority="error")
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == SILENT

    falco_metrics.down_requests = 0  # Falco is back, running the files the charm wrote
    calls.reset()
    out = ctx.run(ctx.on.update_status(), out)

    assert out.unit_status == ACTIVE
    assert calls.restarted == []
    assert remembered(out) == ""
    # Confirmed: a later silence is Falco restarting on those files again, not a lost change.
    falco_metrics.down_requests = 10**6
    assert ctx.run(ctx.on.update_status(), out).unit_status == ACTIVE


def test_a_falco_started_afresh_is_not_called_confirmed_before_it_reports(
    ctx, falco_fs, falco_metrics: FalcoMetrics
):
    out = deployed(ctx, falco_fs)
    falco_metrics.down_requests = 10**6
    out = reconfigure(ctx, out, minimum_priority="error")
    # The pod is rescheduled: a fresh falco container, its filesystem kept by the test.
    container = falco_container(falco_fs)

    out = ctx.run(ctx.on.pebble_ready(container), with_container(out, container))

    assert out.unit_status == NOT_ASKED
    falco_metrics.down_requests = 0
    assert ctx.run(ctx.on.update_status(), out).unit_status == ACTIVE


def test_falco_reporting_other_files_after_an_unconfirmed_change_is_restarted(
    ctx, falco_fs, falco_metrics: FalcoMetrics, calls: Calls
):
    out = deployed(ctx, falco_fs)
    falco_metrics.down_requests = 10**6
    out = reconfigure(ctx, out, minimum_priority="error")
    # Falco answers again, but runs what it read before the change.
    falco_metrics.down_requests = 0
    falco_metrics.snapshot = {"config": {"falco.yaml": "0" * 64}, "rules": {}}
    falco_metrics.follow = False
    calls.reset()

    out = ctx.run(ctx.on.update_status(), out)

    assert calls.restarted == ["falco:falco"]
    assert out.unit_status == RESTARTED
    assert remembered(out) == ""
