"""The real plugins as tools/fetch_falco_plugins.py built them, as session fixtures.

Shared by every conftest whose tests load a plugin (a conftest imports them by name). A missing
build fails the tests, it never skips them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from falco_plugin_api import Plugin

BUILD = Path(__file__).resolve().parents[3] / "build" / "plugins"


def built(name: str) -> Path:
    path = BUILD / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run tox, or python tools/fetch_falco_plugins.py")
    return path


@pytest.fixture(scope="session")
def k8saudit() -> Plugin:
    """libk8saudit.so, loaded once: a Go runtime cannot be unloaded."""
    return Plugin(built("libk8saudit.so"))


@pytest.fixture(scope="session")
def json_plugin() -> Plugin:
    """libjson.so, loaded once, in the same process as k8saudit as in Falco."""
    return Plugin(built("libjson.so"))


@pytest.fixture(scope="session")
def stock_rules() -> list[dict[str, Any]]:
    """The k8s_audit_rules.yaml the build checked and the charm ships."""
    return yaml.safe_load(built("k8s_audit_rules.yaml").read_text())
