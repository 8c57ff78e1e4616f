"""Stand-in for Falco's webserver ``/metrics``, telling which files the running Falco loaded.

A stand-in: Falco's binary cannot run in unit tests. It models Falco 0.44.1's Prometheus text
exposition (falcosecurity/falco @ 0.44.1, ``userspace/falco/falco_metrics.cpp``,
``falco_to_text_prometheus``, served by ``webserver.cpp`` as ``text/plain; version=0.0.4``):
for every loaded file a ``# HELP`` / ``# TYPE … gauge`` pair and a sample
``falcosecurity_falco_sha256_{config,rules}_files_info{file_name="<base name>",sha256="…"} 1``.
What it loaded follows Falco: falco.yaml, then each ``rules_files`` entry, a file or a
directory's regular files in name order (``load_rules_files.cpp``, ``configuration.cpp``).

By default it is a Falco whose hot reloads all land: it reports the files as they are now. The
failure modes Falco 0.44.1 really has are switched on per test: ``freeze`` (a failed reload
dry-run after the charm's push renamed new files over the watched ones: their watches went
with the old inodes, and nothing is reloaded until a restart) and ``miss_next_change`` (the
restart window: the webserver is down a while, then Falco runs the config it read before the
change). A Pebble restart of the falco service makes it load the files afresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from loopback_http import QuietHandler, serving

HELP = "https://falco.org/docs/metrics/"


class FalcoMetrics:
    """What a Falco running on the files under ``etc_falco`` (its /etc/falco) reports."""

    def __init__(self, etc_falco: Path):
        self.etc_falco = etc_falco
        self.follow = True
        self.stuck = False  # True: even a restart does not bring the new files in
        self.down_requests = 0
        self.snapshot: dict[str, dict[str, str]] = {"config": {}, "rules": {}}
        self.requests = 0
        self.restarts = 0

    def loaded_now(self) -> dict[str, dict[str, str]]:
        """The sha256 of each file Falco would load from the files as they are now."""
        config_file = self.etc_falco / "falco.yaml"
        if not config_file.is_file():
            return {"config": {}, "rules": {}}
        text = config_file.read_bytes()
        loaded = {"config": {"falco.yaml": _sha256(text)}, "rules": {}}
        settings = yaml.safe_load(text) or {}
        for entry in settings.get("rules_files") or []:
            path = self.etc_falco / str(entry).removeprefix("/etc/falco/")
            files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
            for file in files:
                if file.is_file():
                    loaded["rules"][file.name] = _sha256(file.read_bytes())
        return loaded

    def freeze(self) -> None:
        """A failed reload dry-run: Falco keeps what it runs and never reloads until restarted."""
        self.snapshot = self.loaded_now()
        self.follow = False

    def miss_next_change(self, down_requests: int = 2) -> None:
        """The restart window: the webserver is down a while, then the config read before."""
        self.freeze()
        self.down_requests = down_requests

    def restart(self) -> None:
        """Pebble restarted Falco: it loads the files afresh and watches them again."""
        self.restarts += 1
        if not self.stuck:
            self.follow = True

    def exposition(self) -> str:
        loaded = self.loaded_now() if self.follow else self.snapshot
        text = _info("version", {"version": "0.44.1"})
        for kind in ("rules", "config"):
            for name, digest in loaded[kind].items():
                text += _info(f"sha256_{kind}_files", {"file_name": name, "sha256": digest})
        name = "falcosecurity_falco_outputs_queue_num_drops_total"
        return text + f"# HELP {name} {HELP}\n# TYPE {name} counter\n{name} 0\n"

    @contextmanager
    def serving(self) -> Iterator[int]:
        """Serve ``/metrics`` on a real 127.0.0.1 socket; yield its port."""
        standin = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                standin.requests += 1
                if standin.down_requests > 0:
                    standin.down_requests -= 1
                    self.close_connection = True  # restarting: no answer at all
                    return
                body = standin.exposition().encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        with serving(Handler) as port:
            yield port


def _info(name: str, labels: dict[str, str]) -> str:
    metric = f"falcosecurity_falco_{name}_info"
    pairs = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"# HELP {metric} {HELP}\n# TYPE {metric} gauge\n{metric}{{{pairs}}} 1\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
