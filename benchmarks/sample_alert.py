"""A Falco-shaped k8s audit alert for the benchmarks, numbered so receivers can match it up."""

from __future__ import annotations

import json

ID_FIELD = "bench.id"  # in output_fields; the GELF mapping turns it into "_bench_id"


def alert(i: int) -> bytes:
    """What Falco posts for a privileged pod, with ``i`` in output_fields[ID_FIELD]."""
    return json.dumps(
        {
            "hostname": "falco-k8s-0",
            "output": f"05:07:26.123456789: Warning Pod started with privileged container "
            f"(user=admin pod=nginx-{i} ns=default images=nginx:1.27)",
            "priority": "Warning",
            "rule": "Create Privileged Pod",
            "source": "k8s_audit",
            "tags": ["k8s", "mitre_privilege_escalation"],
            "time": "2026-11-27T05:07:26.123456789Z",
            "output_fields": {
                ID_FIELD: i,
                "evt.time": 1795756046123456789,
                "ka.user.name": "admin",
                "ka.target.namespace": "default",
                "ka.resp.name": f"nginx-{i}",
                "jevt.value[/requestObject/kind]": "Pod",
                "ka.req.pod.containers.privileged": True,
            },
        },
        separators=(", ", ": "),
    ).encode()
