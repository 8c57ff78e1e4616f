"""Backoff delays: bounded, growing, honouring Retry-After."""

import random

import pytest

from falco_forwarder.config import RetryConfig
from falco_forwarder.worker import backoff_delay

RETRY = RetryConfig(initial_seconds=0.5, max_seconds=60.0, timeout_seconds=10.0)


@pytest.mark.parametrize(
    ("attempts", "ceiling"), [(0, 0.5), (1, 1.0), (3, 4.0), (7, 60.0), (10_000, 60.0)]
)
def test_full_jitter_stays_below_the_doubling_ceiling(attempts: int, ceiling: float):
    rng = random.Random(1)
    delays = [backoff_delay(attempts, None, RETRY, rng) for _ in range(500)]

    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.9 * ceiling  # jitter spans the whole range
    assert min(delays) < 0.1 * ceiling


@pytest.mark.parametrize(("retry_after", "delay"), [(7.5, 7.5), (3600.0, 60.0)])
def test_retry_after_is_honoured_up_to_the_cap(retry_after: float, delay: float):
    assert backoff_delay(0, retry_after, RETRY, random.Random()) == delay


def test_retry_after_zero_still_backs_off():
    assert backoff_delay(3, 0.0, RETRY, random.Random(7)) == backoff_delay(
        3, None, RETRY, random.Random(7)
    )
    assert backoff_delay(3, 0.0, RETRY, random.Random(7)) > 0
