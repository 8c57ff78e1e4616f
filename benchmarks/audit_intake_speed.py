"""What the audit intake costs the apiserver's batches, against posting straight to k8saudit.

Run by hand: ``python benchmarks/audit_intake_speed.py [seconds] [rounds]`` (after ``tox -e
unit`` has built the plugins). At the apiserver's default ceiling, 10 batches a second of 400
events (~1 MB each, the recorded EventList's events padded to ~2.6 KB), an apiserver stand-in
posts each batch from its own thread, as kube-apiserver's webhook backend does, and times each
POST until its answer. Every part is its own process: the client, the real k8saudit plugin
(loaded through the C API harness of ``tests/unit/plugins/`` and read by a next_batch loop as
Falco reads it), and the intake (``python -m audit_intake``). The two sides alternate for
``rounds`` rounds, over http and over https:

- direct: the client posts to k8saudit, keeping its connection (k8saudit keeps it);
- intake: the client posts to the intake (a new connection, and TLS handshake, per batch: the
  intake closes each), which keeps the batch on disk (fdatasync) before its 200 and feeds a
  second k8saudit on loopback.

Printed per side: the POST's latency (what the apiserver waits for), the time until Falco's
loop has read the batch's last event (delivery), and the CPU of the intake's process in cores.
The spool sits on the disk of this checkout's ``build/``: fdatasync time is that disk's.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "src"),
    str(ROOT / "tests" / "unit"),
    str(ROOT / "tests" / "unit" / "plugins"),
]

from audit_intake.config import AcceptedToken, IntakeConfig, config_to_dict, token_sha256  # noqa: E402

if TYPE_CHECKING:
    from tls_ca import TestCa

BUILD = ROOT / "build"
RECORDED = ROOT / "tests" / "unit" / "intake" / "recorded-eventlist.json"
TOKEN = "benchmark-token"
EVENTS_PER_BATCH = 400
BATCHES_PER_SECOND = 10
EVENT_BYTES = 2600
K8SAUDIT_INIT = {"useAsync": False, "maxEventSize": 262144, "webhookMaxBatchSize": 12582912}
_ID = re.compile(rb'"auditID":"b([0-9]{7})-([0-9]{4})')


# -- the falco process: k8saudit read by a next_batch loop -----------------------------------


def falco(params: str, pem: str) -> None:
    """Open k8saudit at ``params``; on "dump" print when each batch's last event was read."""
    from falco_plugin_api import EOF, FAILURE, Plugin  # noqa: PLC0415
    from k8saudit_listener import open_k8saudit  # noqa: PLC0415

    init = {**K8SAUDIT_INIT, **({"sslCertificate": pem} if pem else {})}
    read_at: dict[int, float] = {}
    lock = threading.Lock()
    with open_k8saudit(Plugin(BUILD / "plugins" / "libk8saudit.so"), init, params) as listener:

        def loop() -> None:
            while True:
                rc, batch = listener.instance.next_batch()
                if rc in (FAILURE, EOF):
                    return
                now = time.monotonic()
                for event in batch:
                    found = _ID.search(event.data)
                    if found and int(found[2]) == EVENTS_PER_BATCH - 1:
                        with lock:
                            read_at.setdefault(int(found[1]), now)

        threading.Thread(target=loop, daemon=True).start()
        print("ready", flush=True)
        for _ in sys.stdin:
            with lock:
                print(json.dumps(read_at), flush=True)
                read_at.clear()


# -- the client process: the apiserver's webhook backend ----------------------------------------


def client(port: int, tls: bool, first: int, seconds: float) -> None:
    """Post ``seconds`` x 10 batches, each from its own thread at its own time; print timings."""
    template = json.loads(RECORDED.read_text())["items"]
    count = int(seconds * BATCHES_PER_SECOND)
    bodies = [_batch(template, first + n) for n in range(count)]
    context = None
    if tls:
        context = ssl.create_default_context(cafile=os.environ["BENCH_CA"])
        context.set_alpn_protocols(["http/1.1"])  # Python speaks no HTTP/2
    idle: list[http.client.HTTPConnection] = []
    lock = threading.Lock()
    results: dict[int, tuple[float, float]] = {}

    def post(index: int) -> None:
        with lock:
            connection = idle.pop() if idle else None
        if connection is None:
            connection = (
                http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
                if context
                else http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            )
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        started = time.monotonic()
        connection.request("POST", "/k8s-audit?timeout=30s", bodies[index], headers)
        response = connection.getresponse()
        response.read()
        answered = time.monotonic()
        if response.status != 200:
            raise RuntimeError(f"batch {first + index}: HTTP {response.status}")
        if response.will_close:
            connection.close()
        else:
            with lock:
                idle.append(connection)
        results[first + index] = (started, answered)

    start = time.monotonic() + 0.5
    threads = []
    for index in range(count):
        time.sleep(max(0.0, start + index / BATCHES_PER_SECOND - time.monotonic()))
        thread = threading.Thread(target=post, args=(index,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    print(json.dumps({"results": results, "bytes": sum(map(len, bodies)) / count}))


def _batch(template: list[dict[str, Any]], batch: int) -> bytes:
    events = []
    for index in range(EVENTS_PER_BATCH):
        event = dict(template[index % len(template)])
        event["auditID"] = f"b{batch:07d}-{index:04d}-4000-8000-000000000000"
        size = len(json.dumps(event, separators=(",", ":")))
        pad = max(0, EVENT_BYTES - size - 40)
        event["annotations"] = {**event.get("annotations", {}), "bench/pad": "x" * pad}
        events.append(event)
    document = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}}
    return json.dumps({**document, "items": events}, separators=(",", ":")).encode()


# -- the conductor -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Falco:
    """A falco process: k8saudit on ``port``, https with ``pem``."""

    def __init__(self, port: int, pem: str = "") -> None:
        scheme = "https" if pem else "http"
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--falco", f"{scheme}://127.0.0.1:{port}/k8s-audit", pem],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def read_times(self) -> dict[int, float]:
        """When each batch's last event was read since the last call (monotonic seconds)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("dump\n")
        self.process.stdin.flush()
        return {int(k): v for k, v in json.loads(self.process.stdout.readline()).items()}

    def stop(self) -> None:
        """End the process."""
        self.process.kill()
        self.process.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(port: int, tls: bool, first: int, seconds: float, ca: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--client", str(port), str(int(tls)), str(first), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_CA": ca},
    )
    return json.loads(result.stdout.splitlines()[-1])


def phase(
    falco: Falco, port: int, tls: bool, first: int, seconds: float, ca: str
) -> tuple[list[float], list[float]]:
    """Latencies (ms) of each POST and of each batch's delivery to Falco's loop."""
    falco.read_times()  # forget anything earlier
    sent = run_client(port, tls, first, seconds, ca)["results"]
    expected = {int(k) for k in sent}
    read: dict[int, float] = {}
    deadline = time.monotonic() + 60
    while not expected <= read.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
        read.update(falco.read_times())
    if not expected <= read.keys():
        raise RuntimeError(f"{len(expected - read.keys())} batches never reached k8saudit")
    posts = [(answered - started) * 1000 for started, answered in sent.values()]
    delivered = [(read[int(k)] - started) * 1000 for k, (started, _) in sent.items()]
    return posts, delivered


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    if sys.argv[1:2] == ["--falco"]:
        falco(sys.argv[2], sys.argv[3])
        return
    if sys.argv[1:2] == ["--client"]:
        client(int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4]), float(sys.argv[5]))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    from tls_ca import TestCa  # noqa: PLC0415 - cryptography only in the conductor

    BUILD.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="intake-bench-", dir=BUILD))
    try:
        measure(work, TestCa("benchmark CA"), seconds, rounds)
    finally:
        shutil.rmtree(work)  # the spools: hundreds of MB


def measure(work: Path, ca: TestCa, seconds: float, rounds: int) -> None:
    """Both sides over http, then https: the intake's cost on the same run's direct numbers."""
    certificate, key = ca.server_pem(("127.0.0.1",))
    pem = work / "webhook.pem"
    pem.write_text(certificate + ca.pem + key)
    (work / "ca.pem").write_text(ca.pem)
    print(f"CPUs: {len(os.sched_getaffinity(0))}; {rounds} rounds of {seconds:g} s per side")
    disk = spread(disk_sync_ms(work, 1 << 20))
    print(f"this disk alone, 1 MB append + fdatasync as the spool does: {disk}")
    batch_id = 0
    for tls in (False, True):
        direct = Falco(free_port(), str(pem) if tls else "")
        behind = Falco(free_port())
        config = IntakeConfig(
            "127.0.0.1",
            free_port(),
            "/k8s-audit",
            pem if tls else None,
            (AcceptedToken(token_sha256(TOKEN)),),
            f"http://127.0.0.1:{behind.port}/k8s-audit",
            work / f"spool-{int(tls)}",
            512 * 1024 * 1024,
            12 * 1024 * 1024,
            10.0,
            "127.0.0.1",
            free_port(),
        )
        config_file = work / f"intake-{int(tls)}.json"
        config_file.write_text(json.dumps(config_to_dict(config)))
        intake = subprocess.Popen(
            [sys.executable, "-m", "audit_intake", "--config", str(config_file)],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        samples: dict[str, tuple[list[float], list[float]]] = {
            "direct": ([], []),
            "intake": ([], []),
        }
        cpu = wall = 0.0
        try:
            for _ in range(rounds):
                posts, delivered = phase(
                    direct, direct.port, tls, batch_id, seconds, str(work / "ca.pem")
                )
                batch_id += int(seconds * BATCHES_PER_SECOND)
                samples["direct"][0].extend(posts)
                samples["direct"][1].extend(delivered)
                before, started = cpu_seconds(intake.pid), time.monotonic()
                posts, delivered = phase(
                    behind, config.webhook_port, tls, batch_id, seconds, str(work / "ca.pem")
                )
                cpu += cpu_seconds(intake.pid) - before
                wall += time.monotonic() - started
                batch_id += int(seconds * BATCHES_PER_SECOND)
                samples["intake"][0].extend(posts)
                samples["intake"][1].extend(delivered)
        finally:
            intake.send_signal(signal.SIGTERM)
            intake.wait()
            direct.stop()
            behind.stop()
        report("https" if tls else "http", samples, cpu / wall)


def spread(values: list[float]) -> str:
    return f"p50 {statistics.median(values):6.1f} p99 {percentile(values, 0.99):6.1f} ms"


def disk_sync_ms(directory: Path, size: int, count: int = 200) -> list[float]:
    """What the disk alone costs: appending ``size`` bytes and fdatasync, as the spool does."""
    data = os.urandom(size)
    path = directory / "disk-baseline"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, data)
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.05)
    finally:
        os.close(fd)
        path.unlink()
    return times


def report(scheme: str, samples: dict[str, tuple[list[float], list[float]]], cores: float) -> None:
    print(f"\n{scheme}: {len(samples['direct'][0])} batches per side")
    for what, index in (("POST answered", 0), ("read by Falco's loop", 1)):
        line = [f"{side} {spread(samples[side][index])}" for side in ("direct", "intake")]
        added50 = statistics.median(samples["intake"][index]) - statistics.median(
            samples["direct"][index]
        )
        added99 = percentile(samples["intake"][index], 0.99) - percentile(
            samples["direct"][index], 0.99
        )
        print(f"  {what:22s} {' | '.join(line)} | added p50 {added50:+.1f} p99 {added99:+.1f} ms")
    print(f"  intake process CPU while taking 10 batches/s: {cores:.3f} cores")


if __name__ == "__main__":
    main()
