"""Pebble adapter: the only module that touches a workload container.

It knows files, layers, services and commands, not charms or relations, so it is usable
outside a charm. Every write is conditional: a file is pushed only when its content differs and
a service is restarted only when its Pebble definition changed, so an unchanged hook touches
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import ops

logger = logging.getLogger(__name__)

# How Pebble introduces the failed tasks of a change: the tasks say what went wrong.
_CHANGE_PREAMBLE = "cannot perform the following tasks: - "


class WorkloadError(Exception):
    """The container could not do what was asked (gone away, timed out, refused).

    Every Pebble failure leaves this module as this one error, so callers handle one thing and
    a hiccup in a container never becomes a hook traceback.
    """


@dataclass(frozen=True)
class CommandResult:
    """Exit code and output of a command run in the container."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Both streams, stderr last, for showing to an operator."""
        return "\n".join(part for part in (self.stdout, self.stderr) if part)


class Workload:
    """One container and one Pebble service in it."""

    def __init__(self, container: ops.Container, service: str):
        self.container = container
        self.service = service

    @contextmanager
    def _pebble(self, doing: str) -> Generator[None]:
        try:
            yield
        except ops.pebble.Error as exc:
            # A ChangeError's text carries every task's log: keep that for the debug log and
            # give the status one line.
            logger.error("%s in %s failed: %s", doing, self.container.name, exc)
            reason = exc.err if isinstance(exc, ops.pebble.ChangeError) else str(exc)
            reason = " ".join(reason.split()).removeprefix(_CHANGE_PREAMBLE)
            raise WorkloadError(f"{doing} failed: {reason}") from exc

    def can_connect(self) -> bool:
        """Whether Pebble in the container answers."""
        return self.container.can_connect()

    def read(self, path: str) -> bytes | None:
        """Content of a file, or None when it does not exist."""
        with self._pebble(f"reading {path}"):
            try:
                with self.container.pull(path, encoding=None) as stream:
                    return stream.read()
            except ops.pebble.PathError as exc:
                if exc.kind == "not-found":
                    return None
                raise

    def push_if_changed(
        self, path: str, content: str | bytes, *, permissions: int = 0o644
    ) -> bool:
        """Write a file when its content differs; return whether it was written."""
        data = content.encode() if isinstance(content, str) else content
        if self.read(path) == data:
            return False
        with self._pebble(f"writing {path}"):
            self.container.push(path, data, make_dirs=True, permissions=permissions)
        logger.info("wrote %s (%d bytes)", path, len(data))
        return True

    def remove_if_present(self, path: str) -> bool:
        """Delete a file if it exists; return whether it did."""
        with self._pebble(f"removing {path}"):
            if not self.container.exists(path):
                return False
            self.container.remove_path(path)
        logger.info("removed %s", path)
        return True

    def ensure_dir(self, path: str, *, permissions: int | None = None) -> None:
        """Create a directory (and parents) unless it exists, with ``permissions`` if given."""
        with self._pebble(f"creating {path}"):
            if not self.container.exists(path):
                self.container.make_dir(path, make_parents=True, permissions=permissions)

    def sync_tree(self, files: Mapping[str, bytes], manifest: str, *, manifest_path: str) -> bool:
        """Push a set of files unless the manifest at ``manifest_path`` says they are in place.

        ``manifest`` describes ``files`` (`bundle.tree_manifest`); keeping it next to them
        saves pulling megabytes of plugin binaries on every hook just to compare them. Pebble
        writes each file atomically, so a running process keeps the copy it opened.
        """
        with self._pebble("installing files"):
            present = all(self.container.exists(path) for path in files)
            if present and self.read(manifest_path) == manifest.encode():
                return False
            for path, data in files.items():
                self.container.push(path, data, make_dirs=True, permissions=0o644)
            self.container.push(manifest_path, manifest, make_dirs=True)
        logger.info("installed %s", ", ".join(sorted(files)))
        return True

    def ensure_service(self, layer: Mapping[str, Any]) -> bool:
        """Converge the service and its checks on ``layer``; return whether it was (re)started.

        The service restarts only when its own definition changed; new checks alone are applied
        with a replan, which leaves an unchanged running service alone. Pebble checks restart
        the service themselves when they fail.
        """
        wanted = ops.pebble.Layer(dict(layer))  # type: ignore[arg-type]
        with self._pebble(f"starting {self.service}"):
            plan = self.container.get_plan()
            current = plan.services.get(self.service)
            desired = wanted.services[self.service]
            if current is None or current.to_dict() != desired.to_dict():
                self.container.add_layer(self.service, wanted, combine=True)
                self.container.restart(self.service)
                logger.info("service %s (re)started with a new definition", self.service)
                return True
            if any(
                name not in plan.checks or plan.checks[name].to_dict() != check.to_dict()
                for name, check in wanted.checks.items()
            ):
                self.container.add_layer(self.service, wanted, combine=True)
                self.container.replan()
            if not self.is_running():
                self.container.start(self.service)
                logger.info("service %s was down: started", self.service)
                return True
        return False

    def restart(self) -> None:
        """Restart the service, which then starts afresh from its files."""
        with self._pebble(f"restarting {self.service}"):
            self.container.restart(self.service)
        logger.info("service %s restarted", self.service)

    def log_targets(self) -> Mapping[str, Mapping[str, Any]]:
        """The log targets in the container's plan, as Pebble shows them."""
        with self._pebble("reading log targets"):
            return self.container.get_plan().to_dict().get("log-targets", {})

    def add_log_targets(self, label: str, targets: Mapping[str, Any]) -> None:
        """Merge ``targets`` into the plan; Pebble applies log targets without a restart."""
        with self._pebble("updating log targets"):
            self.container.add_layer(label, {"log-targets": dict(targets)}, combine=True)

    def is_running(self) -> bool:
        """Whether the service exists and is active."""
        try:
            return self.container.get_service(self.service).is_running()
        except (ops.ModelError, ops.pebble.Error):
            return False

    def signal(self, signal: str) -> None:
        """Send a signal to the service's process."""
        with self._pebble(f"sending {signal} to {self.service}"):
            self.container.send_signal(signal, self.service)

    def run(self, command: list[str], *, timeout: float) -> CommandResult:
        """Run a command to completion; a non-zero exit is a result, not an error."""
        name = Path(command[0]).name
        try:
            process = self.container.exec(command, timeout=timeout)
            stdout, stderr = process.wait_output()
            return CommandResult(0, stdout, stderr or "")
        except ops.pebble.ExecError as exc:  # pyright: ignore[reportUnknownVariableType]
            failed = cast("ops.pebble.ExecError[str]", exc)
            return CommandResult(failed.exit_code, _text(failed.stdout), _text(failed.stderr))
        except ops.pebble.TimeoutError as exc:
            raise WorkloadError(f"{name} timed out after {timeout:g}s") from exc
        except ops.pebble.ChangeError as exc:
            # Pebble 1.19 (Juju 3.6) reports an exec past its timeout as a failed change.
            if "timed out after" in exc.err:
                raise WorkloadError(f"{name} timed out after {timeout:g}s") from exc
            raise WorkloadError(f"{name} failed: {exc.err}") from exc
        except ops.pebble.Error as exc:
            raise WorkloadError(f"container {self.container.name} unreachable: {exc}") from exc


def _text(stream: str | bytes | None) -> str:
    if stream is None:
        return ""
    return stream.decode(errors="replace") if isinstance(stream, bytes) else stream
