"""A Workload on a Scenario container of a bare charm, for tests of the adapter and its users."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ops
from ops import testing

from workload import Workload

META = {"name": "workload-test", "containers": {"box": {}}}


@contextmanager
def workload(
    root: Path, mount: str = "/data", **container: Any
) -> Iterator[tuple[Workload, list[str]]]:
    """A Workload on container ``box``, ``mount`` backed by ``root``, and its Pebble changes.

    The log lists the changes it asks Pebble for: push, restart, start, replan.
    """
    ctx = testing.Context(ops.CharmBase, meta=META)
    container.setdefault("can_connect", True)
    box = testing.Container(
        "box",
        mounts={"data": testing.Mount(location=mount, source=root)},
        **container,
    )
    with ctx(ctx.on.update_status(), testing.State(containers={box})) as manager:
        pebble = manager.charm.unit.get_container("box")
        changes: list[str] = []
        for name in ("push", "restart", "start", "replan"):
            method = getattr(pebble, name)

            def spy(*args: object, _name: str = name, _method=method, **kwargs: object):
                changes.append(_name)
                return _method(*args, **kwargs)

            setattr(pebble, name, spy)
        yield Workload(pebble, "app"), changes
