"""Whether this hook has COS work, decided before any COS library loads.

Hooks are fresh processes and the COS libraries cost import time; most hooks of a unit with
no COS relation need none of them, so ``cos`` is imported here only when there is work.
"""

from __future__ import annotations

import ops

from constants import COS_RELATIONS, LOGGING_RELATION
from report import Report
from workload import Workload


def publish_if_related(
    charm: ops.CharmBase, event: ops.EventBase, workloads: list[Workload]
) -> Report:
    """Publish to COS when a COS relation exists, or when ``logging`` just went away.

    A broken ``logging`` relation still needs one pass: it takes the Loki targets out of the
    containers' Pebble log forwarding.
    """
    logging_gone = (
        isinstance(event, ops.RelationBrokenEvent) and event.relation.name == LOGGING_RELATION
    )
    if logging_gone or any(charm.model.relations[name] for name in COS_RELATIONS):
        from cos._publish import publish_cos  # noqa: PLC0415 - the point of this module

        return publish_cos(charm, workloads)
    return Report()
