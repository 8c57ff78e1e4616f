"""Three units behind a per-connection random balancer share one apiserver's batches.

The intake closes the connection after every batch, so the apiserver's client dials anew for
each and the balancer places each batch on its own; k8saudit keeps the connection, so one unit
gets the whole stream (measured with kube-apiserver 1.34.4: 16 batches on one connection).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from fakes.fake_balancing import RandomBalancer, WebhookClient
from falco_plugin_api import Plugin
from intake_helpers import (
    K8SAUDIT_INIT,
    TOKEN,
    FalcoLoop,
    fresh_batch,
    intake_config,
    recorded_events,
    running_intake,
)
from k8saudit_listener import loopback_params, open_k8saudit

from audit_intake import metrics

BATCHES = 900
UNITS = 3
# The apiserver sends up to 15 batches at once (its throttle burst); at 10 per second, a few.
IN_FLIGHT = 4


def send(client: WebhookClient, bodies: list[bytes]) -> list[int]:
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        return list(pool.map(client.post, bodies))


def test_three_intakes_each_take_a_third_of_the_batches_within_20_percent(
    falco: FalcoLoop, tmp_path: Path
):
    bodies = [fresh_batch(recorded_events(), 3)[0] for _ in range(BATCHES)]
    with ExitStack() as stack:
        intakes = [
            stack.enter_context(running_intake(intake_config(tmp_path / f"unit-{n}", falco.port)))
            for n in range(UNITS)
        ]
        balancer = stack.enter_context(RandomBalancer([i.webhook_port for i in intakes]))
        client = WebhookClient(balancer.port, TOKEN, "/k8s-audit")
        statuses = send(client, bodies)
        taken = [int(intake.metrics.value(metrics.BATCHES)) for intake in intakes]

    print(f"batches per unit: {taken} of {BATCHES}; connections dialed: {client.dialed}")
    assert statuses == [200] * BATCHES
    assert client.dialed == BATCHES
    share = BATCHES / UNITS
    assert all(0.8 * share <= count <= 1.2 * share for count in taken), taken


def test_without_the_intake_one_unit_takes_every_batch(k8saudit: Plugin):
    """The control: three k8saudit listeners, the same client and balancer."""
    bodies = [fresh_batch(recorded_events(), 3)[0] for _ in range(30)]
    with ExitStack() as stack:
        ports = []
        for _ in range(UNITS):
            params, port = loopback_params("http://:9766/k8s-audit")
            stack.enter_context(open_k8saudit(k8saudit, K8SAUDIT_INIT, params))
            ports.append(port)
        balancer = stack.enter_context(RandomBalancer(ports))
        client = WebhookClient(balancer.port, TOKEN, "/k8s-audit")
        statuses = [client.post(body) for body in bodies]  # one after the other
        client.close()

    assert statuses == [200] * len(bodies)
    assert client.dialed == 1
    assert sorted(balancer.connections.values()) == [1]
