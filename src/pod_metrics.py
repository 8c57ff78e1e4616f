"""Read a Prometheus ``/metrics`` page served on the pod's loopback by a workload container.

The charm's containers share the pod's network, so Falco's webserver and the forwarder answer
on 127.0.0.1; a short timeout keeps a hook quick when one of them does not.
"""

from __future__ import annotations

import http.client

METRICS_TIMEOUT_SECONDS = 2.0


def read_metrics(port: int) -> str | None:
    """The page's text, or None while nothing answers with 200 (starting, restarting, down)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=METRICS_TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return body.decode("utf-8", "replace") if response.status == 200 else None
