"""A real Pebble per container, each container's filesystem a directory on this machine.

Juju runs each workload container under its own Pebble; here each is ``pebble run`` (the
version Juju 3.6 ships, built by ``tools/install-pebble``) on a temporary ``PEBBLE`` directory.
The charm's code drives it through ops' own client wrapped as an `ops.Container`, so
``workload.py`` runs unchanged against the real thing.

The one seam is the container's root: `Root` maps the container paths the charm uses
(`CONTAINER_DIRS`, from ``constants``) below a directory, for the files pushed and pulled
through `RootedClient` and in the commands and checks of a layer (`Root.layer`). Everything
else — Pebble, the services, signals, checks, exec — is real. Ports in checks can be mapped
too, so that a test never depends on what this machine runs on the pod's fixed ports.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ops
from ops import jujucontext

from constants import (
    ALERTS_DIR,
    FALCO_BIN,
    FALCO_CONFIG_DIR,
    FORWARDER_CONFIG,
    FORWARDER_PKG_DIR,
    INTAKE_CONFIG_DIR,
    INTAKE_PKG_DIR,
    PLUGINS_DIR,
)

REPO = Path(__file__).resolve().parents[3]
PEBBLE = REPO / "build" / "bin" / "pebble"

# What the charm's containers hold that the tests provide: the root of each is mapped.
CONTAINER_DIRS = (
    FALCO_BIN,
    FALCO_CONFIG_DIR,
    str(Path(PLUGINS_DIR).parent),
    FORWARDER_PKG_DIR,
    str(Path(FORWARDER_CONFIG).parent),
    INTAKE_PKG_DIR,
    INTAKE_CONFIG_DIR,
    ALERTS_DIR,
)


@dataclass(frozen=True)
class Root:
    """A container's filesystem: the charm's container paths, below ``path``."""

    path: Path
    ports: Mapping[int, int] = field(default_factory=dict[int, int])

    def __call__(self, container_path: str) -> str:
        """The path on this machine of ``container_path``, if it is one the tests map."""
        if any(container_path.startswith(d) for d in CONTAINER_DIRS):
            return f"{self.path}{container_path}"
        return container_path

    def layer(self, layer: Mapping[str, Any]) -> dict[str, Any]:
        """``layer`` with its paths mapped, python3 the one running here, ports mapped."""
        services = {}
        for name, service in layer.get("services", {}).items():
            words = [self(word) for word in shlex.split(service["command"])]
            words = [sys.executable if word == "python3" else word for word in words]
            env = {key: self(value) for key, value in service.get("environment", {}).items()}
            services[name] = {**service, "command": shlex.join(words), "environment": env}
        checks = {}
        for name, original in layer.get("checks", {}).items():
            check = dict(original)
            if "http" in check:
                url = check["http"]["url"]
                for port, mapped in self.ports.items():
                    url = url.replace(f":{port}/", f":{mapped}/")
                check["http"] = {**check["http"], "url": url}
            if "tcp" in check:
                check["tcp"] = {"port": self.ports.get(check["tcp"]["port"], check["tcp"]["port"])}
            # Pebble's real checks, probed every second instead of every ten (same threshold).
            checks[name] = {**check, "period": "1s"}
        return {**layer, "services": services, "checks": checks}


class RootedClient(ops.pebble.Client):
    """Ops' Pebble client, with the container paths of file calls and exec mapped by a `Root`."""

    def __init__(self, socket_path: str, root: Root):
        super().__init__(socket_path, timeout=10)
        self.root = root

    def push(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().push(self.root(path), *args, **kwargs)

    def pull(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return super().pull(self.root(path), *args, **kwargs)

    def list_files(self, path: str, *args: Any, **kwargs: Any) -> list[ops.pebble.FileInfo]:
        return super().list_files(self.root(path), *args, **kwargs)

    def make_dir(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().make_dir(self.root(path), *args, **kwargs)

    def remove_path(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().remove_path(self.root(path), *args, **kwargs)

    def exec(self, command: list[str], **kwargs: Any) -> Any:  # type: ignore[override]
        return super().exec([self.root(word) for word in command], **kwargs)


class PebbleDaemon:
    """``pebble run`` on a fresh directory; `stop` ends it and every service it started."""

    def __init__(self, directory: Path, root: Root, name: str):
        self.directory = directory
        self.root = root
        self.name = name
        env = {**os.environ, "PEBBLE": str(directory)}
        self.log = directory.with_name(f"{directory.name}.log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(PEBBLE), "run", "--create-dirs"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one process group: stop kills the services with it
            )
        socket_path = directory / ".pebble.socket"
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pebble did not start: {self.stderr()}")
            time.sleep(0.02)
        self.client = RootedClient(str(socket_path), root)
        self.container = ops.Container(name, _backend(), self.client)

    def stderr(self) -> str:
        """What Pebble logged so far, its services' output included."""
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Stop Pebble's services, then Pebble; kill whatever is left of its process group."""
        if self.process.poll() is None:
            with contextlib.suppress(ops.pebble.Error, AttributeError, OSError):
                self.client.stop_services(
                    [s.name for s in self.client.get_services() if s.is_running()], timeout=10
                )
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _backend() -> ops.model._ModelBackend:  # pyright: ignore[reportPrivateUsage]
    """The model backend an `ops.Container` asks only for the Juju version."""
    context = jujucontext.JujuContext._from_dict({"JUJU_VERSION": "3.6.0"})  # pyright: ignore[reportPrivateUsage]
    return ops.model._ModelBackend(juju_context=context)  # pyright: ignore[reportPrivateUsage]


@contextlib.contextmanager
def pebble(directory: Path, root: Root, name: str) -> Iterator[PebbleDaemon]:
    """A running Pebble for container ``name``; always stopped, its services with it."""
    daemon = PebbleDaemon(directory, root, name)
    try:
        yield daemon
    finally:
        daemon.stop()
