"""A forwarder on a tiny alert-log volume of its own: filled up, then its state made read-only.

Run by test_small_volume.py as ``unshare -m`` (or ``unshare -rm``) ``python small_volume.py
SRC WORK SINK_URL``: in a private mount namespace it mounts a 1 MiB tmpfs, fills it with alerts
written as Falco's ``file_output`` does (open, append, close: the appends that fail are the
alerts Falco 0.44.1 loses, a short write leaves part of a line), starts the forwarder there
with a sink that has no checkpoint yet (it cannot be written: the volume is full), writes more
alerts once the forwarder has made room, then remounts the state directory read-only (new
files there fail) and writes more again. It prints what happened as one JSON object.
"""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RATE = 0.002  # seconds between alerts written after the start


def alert(i: int) -> bytes:
    return json.dumps(
        {
            "hostname": "falco-k8s-0",
            "output": f"Warning Pod started with privileged container (pod=nginx-{i:05d})",
            "priority": "Warning",
            "rule": "Create Privileged Pod",
            "source": "k8s_audit",
            "time": "2026-11-27T05:07:26.123456789Z",
            "output_fields": {"n": i, "ka.resp.name": f"nginx-{i:05d}"},
        }
    ).encode()


PARTIAL = "partial"


def append(log: Path, i: int) -> bool | str:
    """One alert as Falco's file_output appends it; False when refused, PARTIAL if cut short."""
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            return False
        raise
    try:
        line = alert(i) + b"\n"
        return True if os.write(fd, line) == len(line) else PARTIAL
    except OSError as e:
        if e.errno == errno.ENOSPC:
            return False
        raise
    finally:
        os.close(fd)


def write_slowly(log: Path, numbers: range) -> list[int]:
    """Append alerts ``numbers`` at Falco's pace; the ones the volume took."""
    taken: list[int] = []
    for i in numbers:
        if append(log, i) is True:
            taken.append(i)
        time.sleep(RATE)
    return taken


def wait(condition: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def main(src: str, work: str, sink_url: str) -> dict[str, Any]:
    sys.path.insert(0, src)
    from falco_forwarder.config import load_config  # noqa: PLC0415 - from SRC, in the namespace
    from falco_forwarder.forwarder import Forwarder  # noqa: PLC0415
    from falco_forwarder.metrics import DELIVERED, DROPPED  # noqa: PLC0415

    volume = Path(work) / "volume"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(volume)], check=True)
    log, state = volume / "log" / "falco.log", volume / "state"
    log.parent.mkdir()
    written, refused, partial = [], 0, 0
    while refused < 20:  # Falco goes on trying, one alert after the other
        outcome = append(log, len(written) + refused)
        if outcome is True:
            written.append(len(written) + refused)
        else:
            refused += 1
            partial += outcome == PARTIAL
    result: dict[str, Any] = {
        "written_before": written,
        "refused_before": refused,
        "partial_before": partial,
    }
    config = Path(work) / "config.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"host": "127.0.0.1", "port": 0},
                "alert_log": {
                    "file": str(log),
                    "state_dir": str(state),
                    "retention_bytes": 256 << 10,
                    "segment_bytes": 64 << 10,
                },
                "juju": {"model": "m", "model_uuid": "u", "application": "a", "unit": "a/0"},
                "retry": {"initial_seconds": 0.05, "max_seconds": 0.5, "timeout_seconds": 5},
                "sinks": [{"name": "new", "format": "falco-json", "url": sink_url}],
            }
        )
    )
    try:
        forwarder = Forwarder(load_config(config))
        forwarder.start()
    except OSError as e:
        result["started"] = f"{type(e).__name__}: {e}"
        return result
    result["started"] = True
    result["errors_at_start"] = forwarder.log.checkpoint_errors()
    try:

        def settled() -> int:
            return forwarder.metrics.value(DELIVERED, sink="new") + sum(
                forwarder.metrics.value(DROPPED, sink="new", reason=reason)
                for reason in ("retention", "malformed")
            )

        result["room_made"] = wait(lambda: os.statvfs(volume).f_bavail > 0)
        start = refused + len(written)
        after = write_slowly(log, range(start, start + 40))
        result["written_after"] = after
        result["all_settled"] = wait(lambda: settled() == len(written) + partial + len(after))
        time.sleep(1.5)  # a sync or two with room on the volume
        result["errors_with_room"] = forwarder.log.checkpoint_errors()
        subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        start = after[-1] + 1 if after else start
        read_only = write_slowly(log, range(start, start + 20))
        result["written_read_only"] = read_only
        total = len(written) + partial + len(after) + len(read_only)
        result["all_settled_read_only"] = wait(lambda: settled() == total)
        result["dropped_retention"] = forwarder.metrics.value(
            DROPPED, sink="new", reason="retention"
        )
        result["dropped_malformed"] = forwarder.metrics.value(
            DROPPED, sink="new", reason="malformed"
        )
    finally:
        forwarder.close()
    return result


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
