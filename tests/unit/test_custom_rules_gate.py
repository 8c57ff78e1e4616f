"""The bad-input matrix for custom rules: each row ends in a clear status, live rules untouched."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ops
import pytest
from charm_pod import (
    ACTIVE,
    DRY_RUN_PREFIX,
    IMAGE_FALCO_YAML,
    Calls,
    active,
    falco_container,
    new_falco_fs,
    pod,
    with_container,
)
from ops import testing

from falco import _options as charm_state

GOOD_RULES = """\
- list: allowed_k8s_users
  items: ["system:serviceaccount:ci:deployer"]
  override:
    items: append
"""

UNKNOWN_FIELD_RULES = """\
- rule: Deployer touched kube-system
  desc: The CI deployer must stay out of kube-system
  condition: ka.verbb = create and ka.target.namespace = kube-system
  output: CI deployer in kube-system (user=%ka.user.name)
  priority: WARNING
  source: k8s_audit
"""

OVERRIDE_MISSING_RULES = """\
- rule: No Such Rule
  condition: and ka.user.name != ci
  override:
    condition: append
"""

# What Falco 0.44 prints for the two rows only Falco itself can catch (stderr, exit code 1).
FALCO_UNKNOWN_FIELD = """\
Tue Nov 27 05:07:26 2026: Falco version: 0.44.1 (x86_64)
Tue Nov 27 05:07:26 2026: Loading rules from: /etc/falco/staging/k8s_audit_rules.yaml
Error: /etc/falco/staging/rules.d/custom_rules.yaml: Invalid
1 Errors:
In rules content: (/etc/falco/staging/rules.d/custom_rules.yaml:0:0)
    rule 'Deployer touched kube-system': (/etc/falco/staging/rules.d/custom_rules.yaml:1:2)
    condition expression: ("ka.verbb = create...":1:0)
------
  condition: ka.verbb = create and ka.target.namespace = kube-system
             ^
------
LOAD_ERR_COMPILE_CONDITION (Error compiling condition): filter_check called with nonexistent \
field ka.verbb
"""

FALCO_OVERRIDE_MISSING = """\
Error: /etc/falco/staging/rules.d/custom_rules.yaml: Invalid
1 Errors:
In rules content: (/etc/falco/staging/rules.d/custom_rules.yaml:0:0)
    rule 'No Such Rule': (/etc/falco/staging/rules.d/custom_rules.yaml:1:2)
------
- rule: No Such Rule
  ^
------
LOAD_ERR_VALIDATE (Error validating rule/macro/list/exception objects): Rule uses 'append' or \
'override.<key>: append' but no rule by that name already exists
"""

LIVE_CUSTOM = Path("etc-falco") / "rules.d" / "custom_rules.yaml"


@pytest.fixture
def good(ctx, falco_fs) -> testing.State:
    """A unit running with GOOD_RULES live."""
    container = falco_container(falco_fs)
    state = testing.State(
        config={"custom_rules": GOOD_RULES},
        containers=pod(container),
        relations={testing.PeerRelation("falco-peers")},
        leader=True,
    )
    out = ctx.run(ctx.on.pebble_ready(container), state)
    assert (falco_fs / LIVE_CUSTOM).read_text() == GOOD_RULES
    return out


def change(
    ctx, state: testing.State, fs: Path, dry_run: testing.Exec | None = None, **config: Any
):
    container = dataclasses.replace(
        state.get_container("falco"), execs=falco_container(fs, dry_run=dry_run).execs
    )
    new = dataclasses.replace(with_container(state, container), config=config)
    return ctx.run(ctx.on.config_changed(), new)


def assert_blocked_and_kept(out: testing.State, fs: Path, message: str) -> None:
    assert isinstance(out.unit_status, testing.BlockedStatus), out.unit_status
    assert out.unit_status.message.startswith(message), out.unit_status.message
    assert (fs / LIVE_CUSTOM).read_text() == GOOD_RULES
    assert out.get_container("falco").service_statuses["falco"].value == "active"


def live_falco_files(fs: Path) -> dict[str, bytes]:
    live = (p for p in (fs / "etc-falco").rglob("*") if "staging" not in p.parts)
    return {str(p): p.read_bytes() for p in live if p.is_file()}


def dry_runs(ctx) -> int:
    return sum(1 for args in ctx.exec_history["falco"] if "--dry-run" in args.command)


@pytest.mark.parametrize(
    ("custom_rules", "message"),
    [
        ("- rule: x\n  desc: [unclosed\n", "custom_rules: YAML error at line"),
        (
            "- rule: Allow CI\n  desc: d\n  output: o\n  priority: NOTICE\n",
            "custom_rules item 1 (rule 'Allow CI', line 1): missing 'condition'",
        ),
        ("- rule: " + "x" * (2 * 1024 * 1024), "custom_rules is"),
        ("\x00\x01\x02binary\xff\xfe garbage", "custom_rules is not text"),
    ],
    ids=["unparsable-yaml", "rule-without-condition", "2MB", "binary-garbage"],
)
def test_python_gate_blocks_before_falco_sees_it(ctx, falco_fs, good, custom_rules, message):
    before = dry_runs(ctx)

    out = change(ctx, good, falco_fs, custom_rules=custom_rules)

    assert_blocked_and_kept(out, falco_fs, message)
    assert dry_runs(ctx) == before  # never staged for Falco


@pytest.mark.parametrize(
    ("custom_rules", "stderr", "message"),
    [
        (
            UNKNOWN_FIELD_RULES,
            FALCO_UNKNOWN_FIELD,
            "custom_rules rejected by Falco: rule 'Deployer touched kube-system': "
            "LOAD_ERR_COMPILE_CONDITION",
        ),
        (
            OVERRIDE_MISSING_RULES,
            FALCO_OVERRIDE_MISSING,
            "custom_rules rejected by Falco: rule 'No Such Rule': LOAD_ERR_VALIDATE",
        ),
        (
            # Valid custom rules, but the candidate fails elsewhere: do not blame the rules.
            GOOD_RULES.replace("ci:deployer", "ci:releaser"),
            "Error: could not load plugin /usr/share/falco/plugins/libk8saudit.so: "
            "plugin API version mismatch\n",
            "falco.yaml rejected by Falco: Error: could not load plugin",
        ),
    ],
    ids=["unknown-field", "override-of-missing-rule", "plugin-error"],
)
def test_falco_dry_run_rejection_blocks_with_its_first_error(
    ctx, falco_fs, good, custom_rules, stderr, message
):
    rejecting = testing.Exec(DRY_RUN_PREFIX, return_code=1, stderr=stderr)

    out = change(ctx, good, falco_fs, dry_run=rejecting, custom_rules=custom_rules)

    assert_blocked_and_kept(out, falco_fs, message)
    staged = falco_fs / "etc-falco" / "staging" / "rules.d" / "custom_rules.yaml"
    assert staged.read_text() == custom_rules  # Falco judged the candidate, not the live file


def test_fixing_the_rules_recovers(ctx, falco_fs, good):
    rejecting = testing.Exec(DRY_RUN_PREFIX, return_code=1, stderr=FALCO_UNKNOWN_FIELD)
    blocked = change(ctx, good, falco_fs, dry_run=rejecting, custom_rules=UNKNOWN_FIELD_RULES)
    fixed = UNKNOWN_FIELD_RULES.replace("ka.verbb", "ka.verb")

    out = change(ctx, blocked, falco_fs, custom_rules=fixed)

    assert out.unit_status == ACTIVE
    assert (falco_fs / LIVE_CUSTOM).read_text() == fixed


def test_clearing_the_rules_recovers_and_removes_the_file(ctx, falco_fs, good):
    out = change(ctx, good, falco_fs, custom_rules="")

    assert out.unit_status == ACTIVE
    assert not (falco_fs / LIVE_CUSTOM).exists()
    assert (falco_fs / "etc-falco" / "rules.d").is_dir()


def test_disabled_rules_matching_nothing_warns_but_applies(ctx, falco_fs, good):
    out = change(
        ctx,
        good,
        falco_fs,
        custom_rules=GOOD_RULES,
        disabled_rules="Disallowed K8s User, No Such Rule, tag:nope",
    )

    assert out.unit_status == active("disabled_rules matched nothing: No Such Rule, tag:nope")
    live = (falco_fs / "etc-falco" / "falco.yaml").read_text()
    assert "rule: Disallowed K8s User" in live
    assert "rule: No Such Rule" in live  # Falco is told anyway: the rule may come later


def _change_error(message: str) -> ops.pebble.ChangeError:
    change = ops.pebble.Change.from_dict(
        {
            "id": "7",
            "kind": "exec",
            "summary": "falco --dry-run",
            "status": "Error",
            "tasks": [],
            "ready": True,
            "err": message,
            "spawn-time": "2026-11-27T05:07:26Z",
        }
    )
    return ops.pebble.ChangeError(message, change)


def test_dry_run_timing_out_keeps_last_good_and_says_so(ctx, falco_fs, good, monkeypatch):
    class TimedOut:
        """What ops hands back when Pebble kills a command at its timeout."""

        def wait_output(self) -> None:
            raise _change_error("timed out after 1m0s")

    monkeypatch.setattr(ops.Container, "exec", lambda self, *args, **kwargs: TimedOut())

    out = change(ctx, good, falco_fs, custom_rules=UNKNOWN_FIELD_RULES)

    assert out.unit_status == testing.WaitingStatus(
        "falco container: falco timed out after 60s; will retry"
    )
    assert (falco_fs / LIVE_CUSTOM).read_text() == GOOD_RULES


def test_container_going_away_mid_gate_keeps_last_good(ctx, falco_fs, good, monkeypatch):
    def gone(self: ops.Container, *args: Any, **kwargs: Any) -> None:
        raise ops.pebble.ConnectionError(
            "cannot connect to socket /charm/containers/falco/pebble.socket"
        )

    monkeypatch.setattr(ops.Container, "exec", gone)

    out = change(ctx, good, falco_fs, custom_rules=UNKNOWN_FIELD_RULES)

    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "unreachable" in out.unit_status.message
    assert (falco_fs / LIVE_CUSTOM).read_text() == GOOD_RULES


def test_a_bad_webhook_option_does_not_hold_back_a_rules_change(ctx, falco_fs, good, kube_api):
    rules = GOOD_RULES.replace("ci:deployer", "ci:releaser")
    requests = len(kube_api.requests)

    out = change(ctx, good, falco_fs, custom_rules=rules, webhook_service_type="LoadBalancer")

    assert (falco_fs / LIVE_CUSTOM).read_text() == rules
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith(
        "webhook_service_type: must be ClusterIP or NodePort"
    )
    # The Service is left as it was: read back, never re-applied.
    assert "PATCH" not in {method for method, _ in kube_api.sent()[requests:]}


@pytest.mark.parametrize(
    "bad",
    [{"custom_rules": "- rule: x\n  desc: [unclosed\n"}, {"minimum_priority": "loud"}],
    ids=["bad-rules", "bad-option"],
)
def test_rescheduled_pod_comes_back_on_the_last_good_config(ctx, falco_fs, good, tmp_path, bad):
    blocked = change(ctx, good, falco_fs, **bad)
    fresh_fs = new_falco_fs(tmp_path / "new-pod")  # with the image's own falco.yaml
    fresh = falco_container(fresh_fs)
    # A new pod: a new charm container too, so nothing local survives; the peer data does.
    new_pod = dataclasses.replace(with_container(blocked, fresh), stored_states=frozenset())

    out = ctx.run(ctx.on.pebble_ready(fresh), new_pod)

    assert (fresh_fs / LIVE_CUSTOM).read_text() == GOOD_RULES
    assert out.get_container("falco").service_statuses["falco"].value == "active"
    assert isinstance(out.unit_status, testing.BlockedStatus)  # the bad option is still named


def test_ten_rule_priority_and_output_changes_restart_falco_zero_times(
    ctx, falco_fs, good, calls: Calls
):
    changes: list[dict[str, Any]] = [
        {"minimum_priority": "warning"},
        {"minimum_priority": "notice", "custom_rules": GOOD_RULES},
        {"http_output": "http://alerts.example.com:8080/falco"},
        {"disabled_rules": "Disallowed K8s User"},
        {"disabled_rules": "tag:k8s", "minimum_priority": "error"},
        {"custom_rules": UNKNOWN_FIELD_RULES.replace("ka.verbb", "ka.verb")},
        {"custom_rules": ""},
        {"http_output": "https://siem.example.com/hook"},
        {"minimum_priority": "debug"},
        {"minimum_priority": "critical"},
    ]
    state = good
    calls.reset()
    falco_changes = 0
    for config in changes:
        before = live_falco_files(falco_fs)
        state = change(ctx, state, falco_fs, **config)
        assert state.unit_status.name == "active", (config, state.unit_status)
        falco_changes += live_falco_files(falco_fs) != before

    assert calls.restarted == []
    assert calls.started == []
    # Every change of Falco's files was gated (the http_output ones only touch the forwarder),
    # and none restarted Falco.
    assert falco_changes == 8
    assert dry_runs(ctx) == 1 + falco_changes
    # The four sink changes (http_output set, dropped, set again, dropped) reload only the
    # forwarder, in place.
    assert calls.signals == [("SIGHUP", ("alert-forwarder",))] * 4


def test_an_unreadable_remembered_config_is_logged_not_fatal(ctx, falco_fs):
    peers = testing.PeerRelation("falco-peers", local_unit_data={"last-good-falco": "{not json"})
    state = testing.State(
        config={"minimum_priority": "loud"},
        containers=pod(falco_container(falco_fs)),
        relations={peers},
        leader=True,
    )

    out = ctx.run(ctx.on.config_changed(), state)

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert (falco_fs / "etc-falco" / "falco.yaml").read_text() == IMAGE_FALCO_YAML  # untouched
    assert any("cannot restore the last good config" in r.message for r in ctx.juju_log)


def test_later_hooks_reuse_the_remembered_check_of_an_unchanged_text(
    ctx, falco_fs, good: testing.State, monkeypatch: pytest.MonkeyPatch
):
    checked: list[str] = []
    read = charm_state.read_custom_rules
    monkeypatch.setattr(charm_state, "read_custom_rules", lambda t: checked.append(t) or read(t))

    out = ctx.run(ctx.on.update_status(), good)
    out = change(ctx, out, falco_fs, custom_rules=GOOD_RULES)

    assert checked == []  # the peer databag holds the outcome for this very text
    assert "checked-falco-rules" in out.get_relations("falco-peers")[0].local_unit_data
    assert out.unit_status == ACTIVE

    change(ctx, out, falco_fs, custom_rules=GOOD_RULES + "# changed\n")
    assert checked == [GOOD_RULES + "# changed\n"]
