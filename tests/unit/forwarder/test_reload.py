"""Live reloads: sinks and limits change while Falco keeps writing alerts."""

import json
import logging
import threading
from pathlib import Path

import pytest
from forwarder_helpers import (
    LOOPBACK,
    ForwarderFactory,
    SinkFactory,
    append_alert,
    config_dict,
    encode,
    falco_alert,
    free_port,
    metric,
    request,
    sink_dict,
    wait_for,
    write_config,
)

from falco_forwarder.forwarder import Forwarder
from falco_forwarder.metrics import CONFIG_RELOADS as RELOADS


class Writer:
    """Appends alerts to the log one after another, as Falco does, until stopped."""

    def __init__(self, forwarder: Forwarder):
        self.forwarder = forwarder
        self.bodies: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            body = encode(falco_alert(len(self.bodies)))
            append_alert(self.forwarder, body)
            self.bodies.append(body)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def drained(forwarder: Forwarder) -> bool:
    return not any(forwarder.log.backlog_bytes().values())


def workers(name: str) -> list[threading.Thread]:
    """The live delivery threads of sink ``name``."""
    return [thread for thread in threading.enumerate() if thread.name == f"sink-{name}"]


def test_added_sink_gets_every_alert_while_others_keep_delivering(
    tmp_path: Path, make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    old, new = make_sink(), make_sink()
    sinks = [sink_dict("old", old.url())]
    forwarder = make_forwarder(sinks)
    running = workers("old")
    writer = Writer(forwarder)
    try:
        wait_for(lambda: len(writer.bodies) >= 20)
        forwarder.reload(write_config(tmp_path, [*sinks, sink_dict("new", new.url())]))
        for generation in range(10):  # more reloads under load, each replacing a worker
            mark = len(writer.bodies)
            wait_for(lambda mark=mark: len(writer.bodies) >= mark + 3)
            rotated = sink_dict("new", new.url(), headers={"X-Generation": str(generation)})
            forwarder.reload(write_config(tmp_path, [*sinks, rotated]))
        mark = len(writer.bodies)
        wait_for(lambda: len(writer.bodies) >= mark + 20)
    finally:
        writer.stop()

    assert len(running) == 1
    assert workers("old") == running  # left untouched
    assert len(workers("new")) == 1

    bodies = writer.bodies
    wait_for(lambda: drained(forwarder))
    assert old.bodies == bodies  # each once, in order
    assert len({r.peer for r in old.received}) == 1  # same worker and connection throughout
    assert new.bodies == bodies  # a new sink starts at the oldest alert kept; none repeated
    assert new.received[-1].headers["X-Generation"] == "9"
    assert metric(forwarder.port, RELOADS, result="ok") == 11
    assert metric(forwarder.port, RELOADS, result="error") == 0
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="new") == len(new.bodies)


def test_removed_sink_gets_nothing_more(
    tmp_path: Path, make_sink: SinkFactory, make_forwarder: ForwarderFactory, alerts_dir: Path
):
    kept, gone = make_sink(), make_sink()
    forwarder = make_forwarder([sink_dict("kept", kept.url()), sink_dict("gone", gone.url())])
    bodies = [encode(falco_alert(i)) for i in range(10)]
    for body in bodies[:5]:
        append_alert(forwarder, body)
    wait_for(lambda: len(kept.received) == len(gone.received) == 5)

    forwarder.reload(write_config(tmp_path, [sink_dict("kept", kept.url())]))
    for body in bodies[5:]:
        append_alert(forwarder, body)

    wait_for(lambda: len(kept.received) == 10)
    assert workers("gone") == []
    assert kept.bodies == bodies
    assert gone.bodies == bodies[:5]
    wait_for(lambda: forwarder.log.backlog_bytes() == {"kept": 0})
    assert (
        'backlog_bytes{sink="gone"}' not in request(forwarder.port, "GET", "/metrics")[1].decode()
    )


def test_removed_sink_resumes_at_its_checkpoint_when_it_returns(
    tmp_path: Path, make_sink: SinkFactory, make_forwarder: ForwarderFactory, alerts_dir: Path
):
    port = free_port()
    up = make_sink()
    down = sink_dict("down", f"http://{LOOPBACK}:{port}/")
    forwarder = make_forwarder([sink_dict("up", up.url()), down])
    bodies = [encode(falco_alert(i)) for i in range(6)]
    for body in bodies[:3]:
        append_alert(forwarder, body)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_retried_total", sink="down") >= 1)

    forwarder.reload(write_config(tmp_path, [sink_dict("up", up.url())]))  # cuts the backoff
    assert (alerts_dir / "state" / "down.checkpoint").exists()
    append_alert(forwarder, bodies[3])  # written while "down" is not configured
    revived = make_sink(port=port)
    forwarder.reload(write_config(tmp_path, [sink_dict("up", up.url()), down]))
    for body in bodies[4:]:
        append_alert(forwarder, body)

    wait_for(lambda: drained(forwarder))
    assert revived.bodies == bodies  # the log kept what came meanwhile
    assert up.bodies == bodies
    assert metric(forwarder.port, RELOADS, result="ok") == 2


def test_rotated_header_applies_to_the_backlog(
    tmp_path: Path, make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    port = free_port()
    url = f"http://{LOOPBACK}:{port}/"
    forwarder = make_forwarder([sink_dict("s", url, headers={"Authorization": "Bearer old"})])
    bodies = [encode(falco_alert(i)) for i in range(10)]
    for body in bodies:
        append_alert(forwarder, body)
    wait_for(lambda: metric(forwarder.port, "falco_forwarder_retried_total", sink="s") >= 2)

    forwarder.reload(
        write_config(tmp_path, [sink_dict("s", url, headers={"Authorization": "Bearer new"})])
    )
    sink = make_sink(port=port)

    assert len(workers("s")) == 1  # the old worker is gone, not racing the new one
    wait_for(lambda: drained(forwarder))
    assert sink.bodies == bodies  # each once, in order
    assert {r.headers["Authorization"] for r in sink.received} == {"Bearer new"}
    assert metric(forwarder.port, "falco_forwarder_delivered_total", sink="s") == 10


@pytest.mark.parametrize("content", ["{", "{}", None], ids=["not-json", "incomplete", "missing"])
def test_invalid_file_keeps_the_running_config(
    tmp_path: Path,
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    caplog: pytest.LogCaptureFixture,
    content: str | None,
):
    sink = make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)

    forwarder.reload(path)

    assert "configuration not reloaded, keeping the running one" in caplog.text
    assert metric(forwarder.port, RELOADS, result="error") == 1
    assert metric(forwarder.port, RELOADS, result="ok") == 0
    body = encode(falco_alert())
    append_alert(forwarder, body)
    wait_for(lambda: sink.bodies == [body])


def test_a_new_sink_whose_checkpoint_cannot_be_opened_still_delivers(
    tmp_path: Path,
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    alerts_dir: Path,
    caplog: pytest.LogCaptureFixture,
):
    sink, other = make_sink(), make_sink()
    forwarder = make_forwarder([sink_dict("s", sink.url())])
    (alerts_dir / "state" / "blocked.checkpoint").mkdir()  # cannot be opened as a file

    forwarder.reload(
        write_config(
            tmp_path,
            [
                sink_dict("s", sink.url(), headers={"X-Rotated": "yes"}),
                sink_dict("blocked", other.url()),
            ],
        )
    )
    body = encode(falco_alert())
    append_alert(forwarder, body)

    wait_for(lambda: sink.bodies == [body] and other.bodies == [body])
    assert sink.received[0].headers["X-Rotated"] == "yes"
    assert metric(forwarder.port, RELOADS, result="ok") == 1
    assert metric(forwarder.port, "falco_forwarder_checkpoint_saved", sink="blocked") == 0
    assert metric(forwarder.port, "falco_forwarder_checkpoint_saved", sink="s") == 1
    assert "sink blocked: cannot open its checkpoint" in caplog.text


def test_listen_and_log_location_changes_need_a_restart(
    tmp_path: Path,
    make_sink: SinkFactory,
    make_forwarder: ForwarderFactory,
    caplog: pytest.LogCaptureFixture,
):
    sink, added = make_sink(), make_sink()
    sinks = [sink_dict("s", sink.url())]
    forwarder = make_forwarder(sinks)
    elsewhere = tmp_path / "elsewhere"
    new_port = free_port()

    forwarder.reload(
        write_config(
            tmp_path,
            [*sinks, sink_dict("added", added.url())],
            port=new_port,
            alert_log={
                "file": str(elsewhere / "falco.log"),
                "state_dir": str(elsewhere),
                "retention_bytes": 1024 * 1024,
                "segment_bytes": 1024,
            },
        )
    )

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "listen and alert_log.file and alert_log.state_dir changed: restart the forwarder to"
        " apply it (the rest is applied)"
    ]
    body = encode(falco_alert())
    append_alert(forwarder, body)  # the old log is still read
    with pytest.raises(ConnectionRefusedError):
        request(new_port, "GET", "/healthz")
    wait_for(lambda: sink.bodies == [body] and added.bodies == [body])
    assert not elsewhere.exists()
    assert metric(forwarder.port, RELOADS, result="ok") == 1


def test_retention_applies_at_once(
    tmp_path: Path, make_forwarder: ForwarderFactory, alerts_dir: Path
):
    sinks = [sink_dict("s", f"http://{LOOPBACK}:{free_port()}/")]
    forwarder = make_forwarder(sinks)
    bodies = [encode(falco_alert(i)) for i in range(10, 20)]  # same length each
    line = len(bodies[0]) + 1
    for body in bodies:
        append_alert(forwarder, body)

    forwarder.reload(
        write_config(
            tmp_path,
            sinks,
            alert_log={
                "file": str(alerts_dir / "log" / "falco.log"),
                "state_dir": str(alerts_dir / "state"),
                "retention_bytes": 4 * line,
                "segment_bytes": 4 * line,
            },
        )
    )

    port = forwarder.port
    # The 10 lines are rotated as one segment, over the cap: all are dropped, and counted.
    wait_for(lambda: metric(port, "falco_forwarder_dropped_total", sink="s", reason="retention"))
    assert metric(port, "falco_forwarder_dropped_total", sink="s", reason="retention") == 10
    assert metric(port, "falco_forwarder_backlog_bytes", sink="s") == 0
    assert metric(port, "falco_forwarder_alert_log_bytes") == 0


def test_new_topology_reaches_gelf_messages(
    tmp_path: Path, make_sink: SinkFactory, make_forwarder: ForwarderFactory
):
    graylog = make_sink()
    sinks = [sink_dict("graylog", graylog.url(), "gelf")]
    forwarder = make_forwarder(sinks)
    append_alert(forwarder, encode(falco_alert(0)))
    wait_for(lambda: len(graylog.received) == 1)

    juju = {**config_dict(tmp_path, [])["juju"], "unit": "falco-k8s/1"}
    forwarder.reload(write_config(tmp_path, sinks, juju=juju))
    append_alert(forwarder, encode(falco_alert(1)))

    wait_for(lambda: len(graylog.received) == 2)
    units = [json.loads(body)["_juju_unit"] for body in graylog.bodies]
    assert units == ["falco-k8s/0", "falco-k8s/1"]
