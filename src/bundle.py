"""The Falco artefacts the charm carries, because the upstream image lacks them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from constants import BUNDLE_DIR, PLUGIN_FILES, STOCK_RULES_FILE


class BundleMissingError(Exception):
    """The charm was packed without its plugin part; the message says how to fix it."""


@dataclass(frozen=True)
class Bundle:
    """Plugin binaries keyed by their path in the container, and the stock k8s audit rules."""

    plugins: dict[str, bytes]
    stock_rules: bytes


def load_bundle(charm_dir: Path) -> Bundle:
    """Read the bundle packed into ``charm_dir``; raise BundleMissingError naming what lacks."""
    root = charm_dir / BUNDLE_DIR
    missing = [name for name in (*PLUGIN_FILES, STOCK_RULES_FILE) if not (root / name).is_file()]
    if missing:
        raise BundleMissingError(
            f"charm package lacks {', '.join(missing)}: rebuild it with charmcraft pack"
        )
    return Bundle(
        plugins={path: (root / name).read_bytes() for name, path in PLUGIN_FILES.items()},
        stock_rules=(root / STOCK_RULES_FILE).read_bytes(),
    )
