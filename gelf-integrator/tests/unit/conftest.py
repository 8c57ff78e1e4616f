"""Fixtures for the integrator's tests: a fake Graylog on loopback, always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_graylog import FakeGraylog

GraylogFactory = Callable[..., FakeGraylog]


@pytest.fixture
def make_graylog() -> Iterator[GraylogFactory]:
    started: list[FakeGraylog] = []

    def make(*args: Any, **kwargs: Any) -> FakeGraylog:
        graylog = FakeGraylog(*args, **kwargs)
        started.append(graylog)
        return graylog

    yield make
    for graylog in started:
        graylog.stop()


@pytest.fixture(params=["7.1.7+3b6c2a1", "6.3.15+a1f0c44"], ids=["graylog7", "graylog6"])
def graylog(request: pytest.FixtureRequest, make_graylog: GraylogFactory) -> FakeGraylog:
    """The fake Graylog in both supported major versions."""
    return make_graylog(version=request.param)
