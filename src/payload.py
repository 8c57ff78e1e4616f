"""The charm's payload for its containers: Falco's plugins and rules, the Python programs.

The upstream Falco image lacks the plugins and the k8s audit rules, and the forwarder image is a
plain Python one that runs both the forwarder and the audit intake, so both containers get their
files from the charm package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from constants import (
    CHARM_RULES_FILE,
    FORWARDER_PKG_DIR,
    INTAKE_PKG_DIR,
    PAYLOAD_DIR,
    PLUGIN_FILES,
    STOCK_RULES_FILE,
)
from options import InvalidStateError

FORWARDER_PACKAGE = "falco_forwarder"
INTAKE_PACKAGE = "audit_intake"


class PayloadMissingError(InvalidStateError):
    """The charm was packed without its plugin part; the message says how to fix it."""


@dataclass(frozen=True)
class Payload:
    """Files keyed by their path in the container they go to, and the rules files Falco loads.

    ``stock_rules`` are upstream's k8s audit rules; ``charm_rules`` the charm's own.
    """

    plugins: dict[str, bytes]
    stock_rules: bytes
    charm_rules: bytes
    forwarder: dict[str, bytes]
    intake: dict[str, bytes]

    @property
    def shipped_rules(self) -> tuple[bytes, bytes]:
        """The rules files the charm ships, in Falco's load order."""
        return (self.stock_rules, self.charm_rules)

    @cached_property
    def plugins_manifest(self) -> str:
        """`tree_manifest` of the plugins, computed once per hook."""
        return tree_manifest(self.plugins)

    @cached_property
    def forwarder_manifest(self) -> str:
        """`tree_manifest` of the forwarder's code, computed once per hook."""
        return tree_manifest(self.forwarder)

    @cached_property
    def intake_manifest(self) -> str:
        """`tree_manifest` of the audit intake's code, computed once per hook."""
        return tree_manifest(self.intake)


def tree_manifest(files: Mapping[str, bytes]) -> str:
    """One ``sha256  path`` line per file, sorted: equal exactly when the files are equal."""
    lines = sorted(f"{hashlib.sha256(data).hexdigest()}  {path}" for path, data in files.items())
    return "\n".join(lines) + "\n"


def manifest_digest(manifest: str) -> str:
    """A short fingerprint of a manifest, for a service environment that must follow it."""
    return hashlib.sha256(manifest.encode()).hexdigest()


def load_payload(charm_dir: Path) -> Payload:
    """Read the payload packed into ``charm_dir``; raise PayloadMissingError naming what lacks."""
    root = charm_dir / PAYLOAD_DIR
    missing = [name for name in (*PLUGIN_FILES, STOCK_RULES_FILE) if not (root / name).is_file()]
    if not (charm_dir / CHARM_RULES_FILE).is_file():
        missing.append(CHARM_RULES_FILE)
    packages = {
        name: sorted((charm_dir / "src" / name).glob("*.py"))
        for name in (FORWARDER_PACKAGE, INTAKE_PACKAGE)
    }
    missing += [f"src/{name}" for name, files in packages.items() if not files]
    if missing:
        raise PayloadMissingError(
            f"charm package lacks {', '.join(missing)}: rebuild it with charmcraft pack"
        )
    return Payload(
        plugins={path: (root / name).read_bytes() for name, path in PLUGIN_FILES.items()},
        stock_rules=(root / STOCK_RULES_FILE).read_bytes(),
        charm_rules=(charm_dir / CHARM_RULES_FILE).read_bytes(),
        forwarder={
            f"{FORWARDER_PKG_DIR}/{FORWARDER_PACKAGE}/{path.name}": path.read_bytes()
            for path in packages[FORWARDER_PACKAGE]
        },
        intake={
            f"{INTAKE_PKG_DIR}/{INTAKE_PACKAGE}/{path.name}": path.read_bytes()
            for path in packages[INTAKE_PACKAGE]
        },
    )
