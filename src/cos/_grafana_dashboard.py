"""Provider side of ``grafana_dashboard``: the dashboards the charm ships, for Grafana to load.

Written from grafana-k8s's ``grafana_dashboard`` library documentation: the leader puts
``dashboards`` in the app databag, JSON ``{"templates": {id: {"charm", "content",
"juju_topology", "inject_dropdowns", "dashboard_alt_uid"}}, "uuid"}``, with ``content`` the
dashboard JSON, LZMA-compressed and base64-encoded. Grafana swaps in its ``${prometheusds}`` and
``${lokids}`` datasources and adds the Juju topology dropdowns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from cosl import LZMABase64


def app_data(directory: Path, topology: Mapping[str, str]) -> dict[str, str]:
    """The leader's app databag for every ``*.json`` dashboard in ``directory``."""
    charm = topology["charm_name"]
    templates: dict[str, dict[str, object]] = {}
    for path in sorted(directory.glob("*.json")):
        key = f"file:{path.stem}"
        templates[key] = {
            "charm": charm,
            "content": LZMABase64.compress(json.dumps(json.loads(path.read_text()))),
            "juju_topology": {
                k: topology[k] for k in ("model", "model_uuid", "application", "unit")
            },
            "inject_dropdowns": True,
            "dashboard_alt_uid": hashlib.shake_256(f"{charm}-{key}".encode()).hexdigest(8),
        }
    # The uuid makes Grafana reload; derived from the content so an unchanged set sends nothing.
    digest = hashlib.sha256(json.dumps(templates, sort_keys=True).encode()).hexdigest()
    return {"dashboards": json.dumps({"templates": templates, "uuid": digest}, sort_keys=True)}
