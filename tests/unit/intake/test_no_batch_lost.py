"""No batch the intake answered 200 for is lost when Falco stops, with the real k8saudit.

`FalcoLoop` stands for Falco's event loop: it reads k8saudit with next_batch, and "stopping
Falco" stops reading and closes the plugin, as Falco does at a stop, restart or hot reload.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from falco_plugin_api import Plugin
from intake_helpers import (
    K8SAUDIT_INIT,
    FalcoLoop,
    fresh_batch,
    intake_config,
    post,
    recorded_events,
    running_intake,
)
from k8saudit_listener import loopback_params, open_k8saudit

from audit_intake import metrics
from audit_intake.service import Intake

EVENTS = recorded_events()


def wait_until(condition: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_k8saudit_answers_200_for_a_batch_falco_then_never_sees(k8saudit: Plugin):
    """The premise, with the real plugin: its 200 means queued in memory, not evaluated.

    A batch answered 200 and not yet read when the plugin closes is gone: the reopened
    listener hands out the next batch, never that one.
    """
    params, _ = loopback_params("http://:9766/k8s-audit")
    answered, answered_ids = fresh_batch(EVENTS, 10)
    later, later_ids = fresh_batch(EVENTS, 10)

    with open_k8saudit(k8saudit, K8SAUDIT_INIT, params) as listener:
        status = listener.post("/k8s-audit", answered).status
    with open_k8saudit(k8saudit, K8SAUDIT_INIT, params) as listener:
        assert listener.post("/k8s-audit", later).status == 200
        read = [event.data.decode() for event in listener.read_events(len(later_ids))]

    assert status == 200
    assert all(any(audit_id in data for data in read) for audit_id in later_ids)
    assert not any(audit_id in data for data in read for audit_id in answered_ids)


def test_a_falco_stop_with_batches_in_flight_loses_no_event(falco: FalcoLoop, tmp_path: Path):
    """Falco stops with batches k8saudit answered 200 for still in its queue, then starts again.

    The intake notices its connection to k8saudit closed and sends again every batch not yet
    settled: the queued ones arrive after the restart. Duplicates are bounded by what was
    answered within the settle time before the stop, and counted.
    """
    batches = [fresh_batch(EVENTS, len(EVENTS)) for _ in range(30)]
    statuses: list[int] = []
    config = intake_config(tmp_path, falco.port, settle_seconds=2.0)
    with running_intake(config) as intake:

        def answered() -> float:
            return intake.metrics.value(metrics.FALCO_ANSWERS, code="200")

        def apiserver() -> None:
            for body, _ in batches:
                statuses.append(post(intake.webhook_port, body).status)
                time.sleep(0.02)

        sender = threading.Thread(target=apiserver)
        sender.start()
        assert wait_until(lambda: answered() >= 8)
        falco.pause()  # Falco busy: k8saudit answers 200 and queues
        queued_from = answered()
        assert wait_until(lambda: answered() >= queued_from + 4)
        falco.stop_falco()  # Falco stops: k8saudit's queue goes with it
        lost_in_k8saudit = [i for _, ids in batches for i in ids if not falco.seen[i]]
        assert wait_until(lambda: len(statuses) >= 20)
        falco.start_falco()
        sender.join()
        every_id = [audit_id for _, ids in batches for audit_id in ids]
        arrived = falco.wait_for(every_id, timeout=60)
        replayed = intake.metrics.value(metrics.REPLAYED_EVENTS)

    duplicates = sum(count - 1 for count in falco.seen.values())
    assert statuses == [200] * len(batches)
    assert len(lost_in_k8saudit) >= 4 * len(EVENTS)  # answered 200, never read
    assert arrived, f"{sum(1 for i in every_id if not falco.seen[i])} events never reached Falco"
    assert 0 < duplicates <= replayed <= 30 * len(EVENTS)


def test_batches_taken_while_falco_is_down_reach_it_when_it_is_back(
    falco: FalcoLoop, tmp_path: Path
):
    falco.stop_falco()
    batches = [fresh_batch(EVENTS, 8) for _ in range(5)]
    with running_intake(intake_config(tmp_path, falco.port)) as intake:
        statuses = [post(intake.webhook_port, body).status for body, _ in batches]
        assert wait_until(
            lambda: intake.metrics.value(metrics.FALCO_ANSWERS, code=metrics.UNREACHABLE) > 0
        )
        assert intake.spool.unsettled[0] == 5
        falco.start_falco()

        assert statuses == [200] * 5
        assert falco.wait_for([i for _, ids in batches for i in ids])
        assert wait_until(lambda: intake.spool.unsettled == (0, 0))


def test_batches_kept_before_an_intake_restart_reach_falco_after_it(
    falco: FalcoLoop, tmp_path: Path
):
    falco.stop_falco()
    batches = [fresh_batch(EVENTS, 8) for _ in range(3)]
    config = intake_config(tmp_path, falco.port)
    with running_intake(config) as first:
        assert [post(first.webhook_port, body).status for body, _ in batches] == [200] * 3
    falco.start_falco()
    with running_intake(config) as second:
        assert falco.wait_for([i for _, ids in batches for i in ids])
        assert second.metrics.value(metrics.REPLAYED_BATCHES) == 3
        assert second.metrics.value(metrics.REPLAYED_EVENTS) == 24


def test_a_full_spool_answers_503_and_takes_again_once_falco_drained_it(
    falco: FalcoLoop, tmp_path: Path
):
    falco.stop_falco()
    body, _ = fresh_batch(EVENTS, 41)
    config = intake_config(
        tmp_path, falco.port, spool_max_bytes=3 * len(body) + 100, max_batch_bytes=len(body)
    )
    with running_intake(config) as intake:
        statuses = [post(intake.webhook_port, body).status for _ in range(4)]
        full = post(intake.webhook_port, body)
        falco.start_falco()
        assert wait_until(lambda: intake.spool.unsettled == (0, 0))
        again = post(intake.webhook_port, fresh_batch(EVENTS, 41)[0])

        assert statuses[:3] == [200] * 3
        assert statuses[3] == full.status == 503
        assert full.headers["Retry-After"] == "10"
        assert intake.metrics.value(metrics.REFUSED, reason=metrics.SPOOL_FULL) == 2
        assert again.status == 200


def test_a_batch_k8saudit_refuses_is_given_up_and_counted_and_the_next_goes_on(
    k8saudit: Plugin, tmp_path: Path
):
    """k8saudit answers 400 to a body over its webhookMaxBatchSize: no retry can help."""
    small, small_ids = fresh_batch(EVENTS, 2)
    large, _ = fresh_batch(EVENTS, 41)
    params, port = loopback_params("http://:9766/k8s-audit")
    init = {**K8SAUDIT_INIT, "webhookMaxBatchSize": len(small) + 10}
    with (
        open_k8saudit(k8saudit, init, params) as listener,
        running_intake(intake_config(tmp_path, port)) as intake,
    ):
        assert post(intake.webhook_port, large).status == 200
        assert post(intake.webhook_port, small).status == 200
        read = [event.data.decode() for event in listener.read_events(2)]

        assert all(any(audit_id in data for data in read) for audit_id in small_ids)
        assert wait_until(lambda: _dropped(intake) == 41)
        assert intake.metrics.value(metrics.FALCO_ANSWERS, code="400") == 1


def _dropped(intake: Intake) -> float:
    return intake.metrics.value(metrics.DROPPED_EVENTS, reason=metrics.REFUSED_BY_K8SAUDIT)
