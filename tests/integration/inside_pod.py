"""How the tests reach inside a falco-k8s unit's pod, and feed it audit events.

Everything goes through the charm container, which has a shell and python3. The forwarder's
chiselled image has neither a shell nor `cat`, and Juju wraps every `juju ssh --container`
command on Kubernetes in `sh -c` (juju `caas/kubernetes/provider/exec/exec.go`), so a
workload container is reached through its own Pebble, whose socket Juju mounts in the charm
container under /charm/containers/<name>/.
"""

from __future__ import annotations

import base64
import json
import shlex
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jubilant
import yaml

from constants import (
    ALERT_LOG,
    FALCO_CONTAINER,
    FALCO_SERVICE,
    FORWARDER_CONTAINER,
    FORWARDER_PORT,
)
from falco_forwarder.metrics import BACKLOG_BYTES

PEBBLE = "/charm/bin/pebble"
DISALLOWED_USER_RULE = "Disallowed K8s User"  # a stock rule every test event raises
_READ_FILE = "import sys; sys.stdout.write(open(sys.argv[1]).read())"
# POST one batch as the apiserver does with the charm's kubeconfig: the CA it pins, the token.
_POST = (
    "import ssl, sys, urllib.request\n"
    "context = ssl.create_default_context(cadata=sys.argv[3])\n"
    "headers = {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + sys.argv[4]}\n"
    "request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers=headers)\n"
    "urllib.request.urlopen(request, timeout=10, context=context)\n"
)
_GET = (
    "import sys, urllib.request; "
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
)


def charm_shell(juju: jubilant.Juju, unit: str, argv: Sequence[str]) -> str:
    """Run ``argv`` in the unit's charm container; its standard output."""
    return juju.ssh(unit, shlex.join(argv))


def pebble(juju: jubilant.Juju, unit: str, container: str, *args: str) -> str:
    """Run the Pebble client against ``container``'s Pebble, from the charm container."""
    socket = f"PEBBLE_SOCKET=/charm/containers/{container}/pebble.socket"
    return charm_shell(juju, unit, ["env", socket, PEBBLE, *args])


def workload_exec(juju: jubilant.Juju, unit: str, container: str, argv: Sequence[str]) -> str:
    """Run ``argv`` in a workload container, shell or not, through its Pebble."""
    return pebble(juju, unit, container, "exec", "--", *argv)


def falco_file(juju: jubilant.Juju, unit: str, path: str) -> str:
    """A file in the Falco container (busybox has `cat`); "" while it does not exist yet.

    Falco creates its alert log only when it writes the first alert.
    """
    return juju.ssh(
        unit, f"[ ! -e {shlex.quote(path)} ] || cat {shlex.quote(path)}", container=FALCO_CONTAINER
    )


def forwarder_file(juju: jubilant.Juju, unit: str, path: str) -> str:
    """A file in the forwarder container, read by its python3 (the image has no `cat`)."""
    return workload_exec(juju, unit, FORWARDER_CONTAINER, ["python3", "-c", _READ_FILE, path])


def json_lines(lines: Iterable[str]) -> list[dict[str, object]]:
    """The JSON objects among ``lines``; anything else (a partial line) is skipped.

    Pebble splits a log line longer than 4 KiB into several (`api_logs.go`), and a file may be
    read while a line is half written.
    """
    found: list[dict[str, object]] = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def logged_alerts(juju: jubilant.Juju, unit: str) -> list[dict[str, object]]:
    """The alerts in Falco's alert log (the forwarder's queue)."""
    return json_lines(falco_file(juju, unit, ALERT_LOG).splitlines())


def stdout_alerts(juju: jubilant.Juju, unit: str) -> list[dict[str, object]]:
    """The alerts on Falco's stdout, as `kubectl logs -c falco` shows them to operators.

    Pebble prefixes each line with "<time> [falco] ".
    """
    log = pebble(juju, unit, FALCO_CONTAINER, "logs", FALCO_SERVICE, "-n", "1000")
    return json_lines(line.partition("] ")[2] for line in log.splitlines())


def backlogs(juju: jubilant.Juju, unit: str) -> dict[str, int]:
    """Bytes of alert log each sink still has to deliver, from the forwarder's own /metrics."""
    url = f"http://127.0.0.1:{FORWARDER_PORT}/metrics"
    text = charm_shell(juju, unit, ["python3", "-c", _GET, url])
    backlog: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name == BACKLOG_BYTES and 'sink="' in rest:
            sink = rest.split('sink="', 1)[1].split('"', 1)[0]
            backlog[sink] = int(float(line.rsplit(" ", 1)[1]))
    return backlog


# -- audit events -----------------------------------------------------------------------------


def marker_names(count: int) -> list[str]:
    """Names no other test uses, one per event, to tell each alert apart at the sink."""
    run = uuid.uuid4().hex[:8]
    return [f"itest-{run}-{index:03d}" for index in range(count)]


def audit_batch(secret_names: Sequence[str]) -> dict[str, object]:
    """A kube-apiserver audit batch (`audit.k8s.io/v1` EventList) as the webhook backend posts.

    In each event a user outside the allowed list reads a Secret, which raises the stock
    'Disallowed K8s User' rule; the Secret's name shows in the alert's output.
    """
    return {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "items": [
            {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "level": "Metadata",
                "auditID": str(uuid.uuid4()),
                "stage": "ResponseComplete",
                "requestURI": f"/api/v1/namespaces/default/secrets/{name}",
                "verb": "get",
                "user": {"username": "mallory", "groups": ["system:authenticated"]},
                "sourceIPs": ["10.1.2.3"],
                "userAgent": "kubectl/v1.31.0",
                "objectRef": {
                    "resource": "secrets",
                    "namespace": "default",
                    "name": name,
                    "apiVersion": "v1",
                },
                "responseStatus": {"metadata": {}, "code": 200},
                "requestReceivedTimestamp": "2026-11-27T05:07:26.000000Z",
                "stageTimestamp": "2026-11-27T05:07:26.010000Z",
            }
            for name in secret_names
        ],
    }


def webhook_kubeconfig(juju: jubilant.Juju, unit: str) -> tuple[str, str, str]:
    """What `get-webhook-config` tells the apiserver: the URL, the CA to trust, the token."""
    results = juju.run(unit, "get-webhook-config").results
    document = yaml.safe_load(results["webhook-config"])
    cluster = document["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    return cluster["server"], ca, document["users"][0]["user"]["token"]


def webhook_server(juju: jubilant.Juju, unit: str) -> str:
    """The URL the kube-apiserver is told to post to, from `get-webhook-config`."""
    return webhook_kubeconfig(juju, unit)[0]


def post_audit_events(
    juju: jubilant.Juju, unit: str, secret_names: Sequence[str], *, token: str | None = None
) -> None:
    """Post one batch to the webhook Service, from the charm container (the apiserver's way).

    ``token`` replaces the kubeconfig's own, to see a wrong one refused.
    """
    server, ca, handed_out = webhook_kubeconfig(juju, unit)
    body = json.dumps(audit_batch(secret_names))
    argv = ["python3", "-c", _POST, server, body, ca, token or handed_out]
    charm_shell(juju, unit, argv)


def raised_for(alerts: Iterable[Mapping[str, object]], names: Iterable[str]) -> set[str]:
    """Which of the marker ``names`` have a 'Disallowed K8s User' alert among ``alerts``."""
    wanted = set(names)
    return {
        name
        for alert in alerts
        if alert.get("rule") == DISALLOWED_USER_RULE
        for name in wanted
        if name in str(alert.get("output", ""))
    }


# -- a sink inside the pod --------------------------------------------------------------------


def receiver_command(port: int, store: str, python: str = "python3") -> list[str]:
    """`alert_receiver.py` as one command line: the container has only the interpreter."""
    source = (Path(__file__).parent / "alert_receiver.py").read_bytes()
    code = f"exec(__import__('base64').b64decode('{base64.b64encode(source).decode()}'))"
    return [python, "-c", code, str(port), store]


@dataclass(frozen=True)
class InPodReceiver:
    """`alert_receiver.py` run as a Pebble service in the forwarder container of ``unit``.

    It listens on the pod's loopback, where the forwarder posts, and keeps what it received in
    a file of that container. A new pod (refresh, deleted pod) needs `start` again.
    """

    juju: jubilant.Juju
    unit: str
    port: int = 8088
    service: str = "itest-receiver"
    store: str = "/tmp/itest-receiver/received.jsonl"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        """Add the service to the forwarder's Pebble (idempotent) and start it."""
        layer = {
            "summary": "integration-test alert receiver",
            "services": {
                self.service: {
                    "override": "replace",
                    "command": shlex.join(receiver_command(self.port, self.store)),
                    "startup": "disabled",
                }
            },
        }
        layer_file = f"/tmp/{self.service}.yaml"
        write = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
        charm_shell(
            self.juju, self.unit, ["python3", "-c", write, layer_file, yaml.safe_dump(layer)]
        )
        pebble(
            self.juju, self.unit, FORWARDER_CONTAINER, "add", "--combine", self.service, layer_file
        )
        pebble(self.juju, self.unit, FORWARDER_CONTAINER, "start", self.service)

    def stop(self) -> None:
        pebble(self.juju, self.unit, FORWARDER_CONTAINER, "stop", self.service)

    def bodies(self, path: str) -> list[str]:
        """Every body received on ``path``, in order; [] before the first."""
        read = (
            "import os, sys; p = sys.argv[1]; "
            "sys.stdout.write(open(p).read() if os.path.exists(p) else '')"
        )
        text = workload_exec(
            self.juju, self.unit, FORWARDER_CONTAINER, ["python3", "-c", read, self.store]
        )
        return [
            str(line["body"]) for line in json_lines(text.splitlines()) if line.get("path") == path
        ]

    def counts(self, path: str, names: Iterable[str]) -> dict[str, int]:
        """How many 'Disallowed K8s User' alerts arrived on ``path`` for each marker name."""
        counts = dict.fromkeys(names, 0)
        for body in self.bodies(path):
            if DISALLOWED_USER_RULE not in body:
                continue
            for name in counts:
                counts[name] += name in body
        return counts
