"""Folding repeated alerts (``dedup_window_seconds``): real forwarders, real sockets on loopback.

Alerts carry the time they are written, as Falco's do, so a window opens when its first alert
is written and closes by the clock.
"""

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.fake_cos_receivers import Receiver, loki_receiver, otlp_receiver
from forwarder_helpers import (
    ForwarderFactory,
    SinkFactory,
    SinkServer,
    append_alert,
    append_line,
    encode,
    falco_alert,
    free_port,
    metric,
    sink_dict,
    wait_for,
    write_config,
)
from test_cli import forwarder_process

from falco_forwarder import worker
from falco_forwarder.alert_time import format_time_ns
from falco_forwarder.config import FORMAT_GELF, FORMAT_LOKI, FORMAT_OTLP
from falco_forwarder.forwarder import FOLDS_SUFFIX, Forwarder
from falco_forwarder.metrics import DELIVERED, FOLDED

RULE = "Create Privileged Pod"
# Every key field an audit rule prints: a change of any one is a new alert.
KEY_FIELDS = {
    "ka.user.name": "admin",
    "ka.verb": "create",
    "ka.target.resource": "pods",
    "ka.target.subresource": "exec",
    "ka.target.namespace": "default",
    "ka.target.name": "nginx",
}


def audit_alert(n: int = 0, rule: str = RULE, priority: str = "Warning", **fields: Any) -> bytes:
    """A real-shaped k8s_audit alert written now; ``n`` changes only the per-event fields."""
    now = time.time_ns()
    alert = falco_alert(0, rule=rule, priority=priority, time=format_time_ns(now))
    alert["output_fields"].update(KEY_FIELDS)
    alert["output_fields"].update({"evt.time": now, "ka.auditid": f"audit-{n}", **fields})
    return encode(alert)


def falco_json(body: bytes) -> dict[str, Any]:
    return json.loads(body)


def repeats(alert: dict[str, Any]) -> int | None:
    return alert["output_fields"].get("falco.repeats")


def folded(forwarder: Forwarder, rule: str = RULE, sink: str = "s") -> int:
    return forwarder.metrics.value(FOLDED, sink=sink, rule=rule)


def test_repeats_go_out_once_then_as_one_summary_when_the_window_closes(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())], dedup_window_seconds=2)
    for n in range(5):
        append_alert(forwarder, audit_alert(n))

    wait_for(lambda: folded(forwarder) == 4, what="4 repeats folded")
    first = falco_json(sink.bodies[0])
    assert len(sink.bodies) == 1
    assert repeats(first) is None
    wait_for(lambda: len(sink.bodies) == 2, timeout=5, what="the summary")
    summary = falco_json(sink.bodies[1])
    # The first repeat as Falco wrote it, with the count and the first and last repeat's time.
    assert summary["output_fields"]["ka.auditid"] == "audit-1"
    assert repeats(summary) == 4
    assert summary["output_fields"]["falco.repeats.first"] == summary["time"]
    assert summary["output_fields"]["falco.repeats.last"] >= summary["time"]
    assert (summary["rule"], summary["priority"]) == (first["rule"], first["priority"])
    wait_for(lambda: forwarder.metrics.value(DELIVERED, sink="s") == 2, what="2 delivered")
    assert not (forwarder.log.state_dir / f"s{FOLDS_SUFFIX}").read_bytes()  # nothing held


def test_folding_never_crosses_rules_or_priorities(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())], dedup_window_seconds=2)
    kinds = [(RULE, "Warning"), ("Attach/Exec Pod", "Warning"), (RULE, "Critical")]
    for n in range(2):
        for rule, priority in kinds:
            append_alert(forwarder, audit_alert(n, rule, priority))

    wait_for(lambda: folded(forwarder) == 2 and folded(forwarder, "Attach/Exec Pod") == 1)
    firsts = [falco_json(body) for body in sink.bodies]
    assert [(a["rule"], a["priority"], repeats(a)) for a in firsts] == [
        (rule, priority, None) for rule, priority in kinds
    ]
    wait_for(lambda: len(sink.bodies) == 6, timeout=5, what="three summaries")
    summaries = [falco_json(body) for body in sink.bodies[3:]]
    assert sorted((a["rule"], a["priority"], repeats(a)) for a in summaries) == sorted(
        (rule, priority, 1) for rule, priority in kinds
    )


@pytest.mark.parametrize("field", sorted(KEY_FIELDS))
def test_an_alert_with_a_changed_key_field_goes_out_at_once(
    field: str, make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())], dedup_window_seconds=2)
    append_alert(forwarder, audit_alert(0))
    append_alert(forwarder, audit_alert(1))
    append_alert(forwarder, audit_alert(2, **{field: "changed"}))

    wait_for(lambda: len(sink.bodies) == 2, what="the first and the changed alert")
    changed = falco_json(sink.bodies[1])
    assert changed["output_fields"][field] == "changed"
    assert repeats(changed) is None
    wait_for(lambda: folded(forwarder) == 1, what="the repeat folded, held for its summary")
    assert len(sink.bodies) == 2
    wait_for(lambda: len(sink.bodies) == 3, timeout=5, what="the summary")
    assert repeats(falco_json(sink.bodies[2])) == 1


def test_internal_alerts_and_other_sources_never_fold(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())], dedup_window_seconds=60)
    internal = {
        "hostname": "vm",
        "output": "Falco internal: hot restart failure: Cannot load plugin 'nosuchplugin'",
        "output_fields": {},
        "priority": "Critical",
        "rule": "Falco internal: hot restart failure",
        "source": "internal",
        "time": format_time_ns(time.time_ns()),
    }
    for _ in range(3):
        append_alert(forwarder, encode(internal))

    wait_for(lambda: len(sink.bodies) == 3, what="every internal alert")
    assert folded(forwarder, internal["rule"]) == 0


def test_turning_folding_off_sends_the_open_windows_summaries_at_once(
    tmp_path: Path, make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    sinks = [sink_dict("s", sink.url())]
    forwarder = make_forwarder(sinks, dedup_window_seconds=600)
    for n in range(3):
        append_alert(forwarder, audit_alert(n))
    wait_for(lambda: folded(forwarder) == 2, what="2 repeats folded")

    forwarder.reload(write_config(tmp_path, sinks))  # no dedup_window_seconds: off
    wait_for(lambda: len(sink.bodies) == 2, what="the summary")
    append_alert(forwarder, audit_alert(3))
    wait_for(lambda: len(sink.bodies) == 3, what="the next repeat, as it is")

    assert [repeats(falco_json(body)) for body in sink.bodies] == [None, 2, None]


def test_a_flood_of_repeats_is_read_a_batch_at_a_time_with_no_wait_between(
    alerts_dir: Path,
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    monkeypatch: pytest.MonkeyPatch,
):
    # A folded line adds no piece: a flood must still be read a bounded batch at a time (the
    # worker's lock is held meanwhile), and the next batch taken at once, not at the next wake.
    monkeypatch.setattr(worker, "_BATCH_ALERTS", 10)
    monkeypatch.setattr(worker, "_IDLE_SECONDS", 60.0)
    for n in range(100):  # all written before the forwarder starts: nothing wakes it after
        append_line(alerts_dir / "log" / "falco.log", audit_alert(n))
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())], dedup_window_seconds=600)

    wait_for(lambda: folded(forwarder) == 99, what="99 repeats folded")
    journal = forwarder.log.state_dir / f"s{FOLDS_SUFFIX}"
    records = [json.loads(line)[3] for line in journal.read_bytes().splitlines()]
    assert sum(op[0] == "fold" for ops in records for op in ops) == 99
    assert max(sum(op[0] == "fold" for op in ops) for ops in records) <= 10
    assert len(sink.bodies) == 1


# -- each sink's idiom --------------------------------------------------------------------------


def test_gelf_shows_a_summary_as_falco_repeats_fields(
    make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url(), FORMAT_GELF)], dedup_window_seconds=1)
    for n in range(3):
        append_alert(forwarder, audit_alert(n))

    wait_for(lambda: len(sink.bodies) == 2, timeout=5, what="the first and the summary")
    first, summary = (json.loads(body) for body in sink.bodies)
    assert "_falco_repeats" not in first
    assert summary["_falco_repeats"] == 2
    assert summary["_falco_repeats_first"] <= summary["_falco_repeats_last"]
    assert summary["_falco_rule"] == RULE
    assert summary["_ka_user_name"] == "admin"


def _first_and_summary(
    receiver: Receiver, fmt: str, make_forwarder: ForwarderFactory, receivers: list[Receiver]
) -> list[Any]:
    """What ``receiver`` took of three repeats through a 1 s window: the first, the summary."""
    receivers.append(receiver)
    forwarder = make_forwarder([sink_dict("s", receiver.url, fmt)], dedup_window_seconds=1)
    for n in range(3):
        append_alert(forwarder, audit_alert(n))
    wait_for(lambda: len(receiver.accepted) == 2, timeout=5, what="the first and the summary")
    return receiver.accepted


def test_loki_marks_a_summary_with_a_label_and_its_repeats_in_the_line(
    make_forwarder: ForwarderFactory, receivers: list[Receiver]
):
    accepted = _first_and_summary(loki_receiver(), FORMAT_LOKI, make_forwarder, receivers)

    (first_labels, _, first_line), (labels, _, line) = accepted
    assert "folded" not in first_labels
    assert "repeats" not in json.loads(first_line)
    assert labels == {**first_labels, "folded": "true"}
    summary = json.loads(line)
    assert summary["repeats"] == 2
    assert not {"falco.repeats", "falco.repeats.first"} & set(summary["output_fields"])
    assert summary["repeats_first"] <= summary["repeats_last"]


def test_otlp_shows_a_summary_as_attributes(
    make_forwarder: ForwarderFactory, receivers: list[Receiver]
):
    accepted = _first_and_summary(otlp_receiver(), FORMAT_OTLP, make_forwarder, receivers)

    attributes = [
        {kv["key"]: kv["value"] for kv in record["attributes"]} for _, record in accepted
    ]
    assert "falco.repeats" not in attributes[0]
    assert attributes[1]["falco.repeats"] == {"intValue": "2"}
    assert attributes[1]["falco.rule"] == {"stringValue": RULE}
    assert "stringValue" in attributes[1]["falco.repeats.last"]


# -- kills ----------------------------------------------------------------------------------------


def _folded_in(port: int, count: int) -> bool:
    try:
        return metric(port, "falco_forwarder_folded_total", sink="s", rule=RULE) == count
    except (AssertionError, OSError):
        return False


def _fold_then_kill(tmp_path: Path, sink: SinkServer, alerts: int) -> tuple[Path, Path, int]:
    """Run the forwarder process on ``alerts`` repeats, SIGKILL it once the folds are committed.

    The window is 4 s: still open at the kill. Returns the config, the alert log and the port.
    """
    port = free_port()
    config = write_config(tmp_path, [sink_dict("s", sink.url())], port, dedup_window_seconds=4)
    log = tmp_path / "alerts" / "log" / "falco.log"
    with forwarder_process(config) as process:
        for n in range(alerts):
            append_line(log, audit_alert(n))
        wait_for(lambda: _folded_in(port, alerts - 1), what="the repeats folded")
        process.send_signal(signal.SIGKILL)
        process.communicate()
    return config, log, port


def test_a_kill_mid_window_loses_no_summary_and_sends_no_repeat_twice(
    tmp_path: Path, make_sink: SinkFactory
):
    sink = make_sink()
    config, log, port = _fold_then_kill(tmp_path, sink, 6)
    assert len(sink.bodies) == 1  # the first; the window is still open

    for n in range(6, 9):  # more repeats while the forwarder is down
        append_line(log, audit_alert(n))
    with forwarder_process(config) as process:
        wait_for(lambda: len(sink.bodies) == 2, timeout=10, what="the summary")
        assert repeats(falco_json(sink.bodies[1])) == 8
        _kill_once_settled(process, port)
    with forwarder_process(config):
        wait_for(lambda: _healthy_metric(port), what="the forwarder back")
        time.sleep(0.5)
    assert len(sink.bodies) == 2  # the summary is not sent again either
    assert [repeats(falco_json(body)) for body in sink.bodies] == [None, 8]


def _kill_once_settled(process: Any, port: int) -> None:
    """SIGKILL ``process`` once it reports the summary delivered (so its checkpoint moved)."""
    wait_for(lambda: metric(port, "falco_forwarder_delivered_total", sink="s") >= 1)
    process.send_signal(signal.SIGKILL)
    process.communicate()


def _healthy_metric(port: int) -> bool:
    try:
        return metric(port, "falco_forwarder_delivered_total", sink="s") >= 0
    except OSError:
        return False


def test_a_kill_restarts_from_the_journal_only_up_to_the_checkpoint(
    tmp_path: Path, make_sink: SinkFactory
):
    sink = make_sink()
    config, _, _ = _fold_then_kill(tmp_path, sink, 3)
    journal = tmp_path / "alerts" / "state" / f"s{FOLDS_SUFFIX}"
    # A line written for a checkpoint the kill never reached: replayed, it would count twice.
    segment, offset, line, ops = json.loads(journal.read_bytes().splitlines()[-1])
    folds = [op for op in ops if op[0] == "fold"]
    beyond = json.dumps([segment, offset + 10**9, line, folds]).encode()
    journal.write_bytes(journal.read_bytes() + beyond + b"\n")
    with forwarder_process(config):
        wait_for(lambda: len(sink.bodies) == 2, timeout=10, what="the summary")
    assert repeats(falco_json(sink.bodies[1])) == 2
