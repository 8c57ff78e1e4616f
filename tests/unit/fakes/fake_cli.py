#!/usr/bin/env python3
"""A stand-in for the commands an operator's shell runs around falco-k8s, recording each call.

Juju, MicroK8s, the k8s snap, snapd and systemd cannot run here, so the shell text the charm
hands out (and the README's commands) run through bash with this script on ``PATH`` under the
names ``juju``, ``microk8s``, ``k8s``, ``sudo``, ``snap`` and ``systemctl``. Every call is
appended to ``$FAKE_CLI_LOG`` as one JSON line: the command name and its argv after it, and the
``JUJU_MODEL`` it ran with (Juju's CLI takes the model from it when no ``-m`` is given). Only
what the scripts read back is modelled, from the real tools' output:

- ``juju config <app> <key>`` prints the value unformatted, as ``juju help config`` says it
  does for one key (and a newline); ``juju config <app> key=value ...`` stores the values;
- ``juju run <unit> <action> --format=json`` prints ``{"<unit>": {"results": {...},
  "status": "completed", ...}}`` (Juju 3.6 ``cmd/juju/action/run.go``; jubilant 1.x
  ``Juju.run`` parses the same shape);
- ``microk8s kubectl`` and ``k8s kubectl`` ``-n NS get configmap NAME -o jsonpath={.data.KEY}``
  print that key of the ConfigMap, as kubectl's jsonpath output does (no newline added);
  ``get secret`` prints a Secret's key base64-encoded, as the API keeps a Secret's data;
- ``sudo`` runs the rest of its argv as given (the caller is root already).

``$FAKE_CLI_STATE`` names a JSON file holding ``config`` (app -> key -> value),
``action_results`` (unit -> action -> results), ``configmaps`` and ``secrets`` (name -> data,
the Secrets' in plain text).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path

NAMES = ("juju", "microk8s", "k8s", "sudo", "snap", "systemctl")
_JSONPATH = re.compile(r"jsonpath=\{\.data\.(?P<key>.+)\}")


def main() -> int:
    name = Path(sys.argv[0]).name
    argv = sys.argv[1:]
    if name == "sudo":
        os.execvp(argv[0], argv)
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps({"argv": [name, *argv], "model": os.environ.get("JUJU_MODEL", "")}))
        log.write("\n")
    state_file = Path(os.environ["FAKE_CLI_STATE"])
    state = json.loads(state_file.read_text())
    if name == "juju" and argv[:1] == ["config"]:
        app, settings = argv[1], argv[2:]
        values = state.setdefault("config", {}).setdefault(app, {})
        if len(settings) == 1 and "=" not in settings[0]:
            sys.stdout.write(f"{values.get(settings[0], '')}\n")
            return 0
        for setting in settings:
            key, _, value = setting.partition("=")
            values[key] = value
        state_file.write_text(json.dumps(state))
    elif name == "juju" and argv[:1] == ["run"]:
        unit, action = argv[1], argv[2]
        results = state["action_results"][unit][action]
        answer = {unit: {"id": "2", "results": results, "status": "completed", "unit": unit}}
        sys.stdout.write(json.dumps(answer) + "\n")
    elif name in ("microk8s", "k8s") and argv[:1] == ["kubectl"]:
        kind = "configmap" if "configmap" in argv else "secret"
        object_name = argv[argv.index(kind) + 1]
        match = _JSONPATH.fullmatch(argv[argv.index("-o") + 1])
        assert match, argv
        value = state[f"{kind}s"][object_name][match["key"].replace("\\.", ".")]
        if kind == "secret":
            value = base64.b64encode(value.encode()).decode()
        sys.stdout.write(value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
