"""A stand-in for ``/usr/bin/falco`` (Falco 0.44.1), for tests that run the pod under Pebble.

Falco's binary cannot run here, so this script models what the charm and the forwarder rely
on, and nothing else:

- the command line the charm uses: ``-c FILE --disable-source syscall`` to run, with
  ``--dry-run`` to validate, with ``-L -o json_output=true`` to list the loaded rules (one
  JSON document on stdout, the shape ``falco_output.parse_rules_listing`` parses);
- the webserver's ``GET /healthz`` on ``webserver.listen_port`` and the k8saudit listener on
  the port in the k8saudit plugin's ``open_params`` (Pebble's checks probe both);
- ``file_output`` with ``keep_alive: false``: for every alert, open the file in append mode,
  write one JSON line, close it (falco 0.44.1 ``userspace/falco/outputs_file.cpp``), one alert
  after the other from one thread, so a file renamed away is recreated by the next alert;
- JSON alert lines as ``json_output`` with the ``json_include_*`` options write them
  (``userspace/falco/formats.cpp`` in falco 0.44.1): ``hostname``, ``output``, ``priority``,
  ``rule``, ``source``, ``tags``, ``time``, ``output_fields``, ``message``;
- ``append_output`` entries with static ``extra_fields``, added to the output fields of every
  rule's alert they match (`with_extra_fields`).

Every audit event POSTed to the k8saudit listener (an ``EventList``) raises one alert. The
container root is the directory two levels above this file (``<root>/usr/bin/falco``): paths
in the config are read below it, as inside the container.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="falco")
    parser.add_argument("-c", dest="config", required=True)
    parser.add_argument("--disable-source", action="append", default=[])
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("-L", dest="list_rules", action="store_true")
    parser.add_argument("-o", dest="options", action="append", default=[])
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    if args.list_rules:
        print(json.dumps({"required_engine_version": "0.x", "rules": _rules(config)}))
        return 0
    if args.dry_run:
        print("Falco initialized with configuration files:")
        return 0
    return _run(config)


def _rules(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each rule of the loaded rule files, as ``falco -L -o json_output=true`` lists it."""
    listed: list[dict[str, Any]] = []
    for name in config.get("rules_files", []):
        path = ROOT / name.lstrip("/")
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for item in (entry for f in files for entry in yaml.safe_load(f.read_text()) or []):
            if "rule" in item:
                info = {
                    "name": item["rule"],
                    "priority": item.get("priority", "Debug"),
                    "source": item.get("source", "k8s_audit"),
                    "enabled": item.get("enabled", True),
                    "tags": item.get("tags", []),
                }
                listed.append({"info": info, "details": {}})
    return listed


def _run(config: dict[str, Any]) -> int:
    log = ROOT / config["file_output"]["filename"].lstrip("/")
    health_port = int(config["webserver"]["listen_port"])
    audit_port = int(config["plugins"][0]["open_params"].split(":")[2].split("/")[0])
    lock = threading.Lock()  # Falco's one output thread: one alert after the other

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(200, b'{"status": "ok"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            events = json.loads(body).get("items", [])
            with lock:
                for event in events:
                    _append(log, with_extra_fields(_alert(event), config))
            self._reply(200, b"<html></html>")

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    servers = [
        ThreadingHTTPServer(("127.0.0.1", port), Handler) for port in (health_port, audit_port)
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"Falco stand-in running: alerts to {log}", flush=True)
    stop.wait()
    return 0


def _alert(event: dict[str, Any]) -> dict[str, Any]:
    user = event.get("user", {}).get("username", "")
    name = event.get("objectRef", {}).get("name", "")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    output = f"Warning Pod started with privileged container (user={user} pod={name})"
    return {
        "hostname": socket.gethostname(),
        "output": f"{now[11:29]}: {output}",
        "output_fields": {"ka.user.name": user, "ka.resp.name": name, "evt.time": 0},
        "priority": "Warning",
        "rule": "Create Privileged Pod",
        "source": "k8s_audit",
        "tags": ["k8s", "NIST_800-53_AC-6"],
        "time": now,
        "message": output,
    }


def with_extra_fields(alert: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``alert`` with the ``extra_fields`` of falco.yaml's ``append_output`` entries that match it.

    As Falco 0.44.1 adds them: an entry applies to each rule whose source, name and tags (all of
    ``match.tags``) it matches, no ``match`` to every rule (``rule_loader_compiler.cpp``); a
    one-key map is a formatted field, its value a format string (``configuration.h``); in JSON
    output only, ``output_fields[key]`` is the formatted text, while ``output`` and ``message``
    stay as they were (``formats.cpp``). Falco's own alerts (source ``internal``, from
    ``falco_outputs::handle_msg``) pass no rule and get none. Only static values are modelled
    (no ``%field``, no raw fields): the charm writes no other.
    """
    if alert["source"] == "internal":
        return alert
    fields = dict(alert["output_fields"])
    for entry in config.get("append_output") or []:
        match = entry.get("match") or {}
        if (
            match.get("source", alert["source"]) != alert["source"]
            or match.get("rule", alert["rule"]) != alert["rule"]
            or not set(match.get("tags", [])) <= set(alert["tags"])
        ):
            continue
        for field in entry.get("extra_fields") or []:
            ((key, value),) = field.items()  # a raw field (a bare name) is not modelled
            if "%" in value:
                raise NotImplementedError(f"extra field {key}: only static values are modelled")
            fields[key] = value
    return {**alert, "output_fields": fields}


def falco_json(alert: dict[str, Any]) -> bytes:
    """The line Falco writes for ``alert``: nlohmann::json's compact dump, keys in sorted order."""
    return json.dumps(alert, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _append(log: Path, alert: dict[str, Any]) -> None:
    """file_output with keep_alive false: open, write one line, close."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, falco_json(alert) + b"\n")
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
