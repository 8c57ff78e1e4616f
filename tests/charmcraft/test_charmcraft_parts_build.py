"""charmcraft.yaml's plugin parts, run by charmcraft 4.5's own craft-parts, build what CI builds.

GitHub is out of reach here, so the parts clone a local git repository holding the two plugin
modules as the Go module proxy serves them (go.sum-checked) at their paths in
falcosecurity/plugins; its commit stands in for the pinned one. The go snap and Ubuntu's gcc are
the machine's Go and gcc here, so build-snaps and build-packages are left to the machine and
craft-parts gets its no-op package repository (apt's Python binding is not on PyPI).
Everything else is charmcraft.yaml's parts as written: after, $CRAFT_STAGE, the staged script,
build-environment, stage and prime.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import craft_parts
import fetch_falco_plugins as fetcher
import pytest
import yaml
from craft_parts import Step, packages
from craft_parts.packages.base import DummyRepository

from constants import PAYLOAD_DIR, PLUGIN_FILES, STOCK_RULES_FILE

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _upstream_stand_in(root: Path, module_dirs: dict[str, Path]) -> str:
    """A git repository with plugins/<name> from each module; returns its commit."""
    for name, source in module_dirs.items():
        shutil.copytree(source, root / "plugins" / name)
    _git("init", "-q", cwd=root)
    _git("add", "-A", cwd=root)
    _git("commit", "-q", "-m", "falcosecurity/plugins stand-in", cwd=root)
    return _git("rev-parse", "HEAD", cwd=root)


def _plugin_parts(upstream: Path, commit: str) -> dict[str, Any]:
    parts = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())["parts"]
    del parts["charm"]  # the uv charm part is charmcraft's own business
    parts = copy.deepcopy(parts)
    parts["falco-plugins-build-script"]["source"] = str(ROOT / "tools")
    parts["icon"]["source"] = str(ROOT / "icon.svg")
    for name in ("k8saudit", "json"):
        part = parts[f"{name}-plugin"]
        part.update({"source": str(upstream), "source-commit": commit})
        del part["build-snaps"], part["build-packages"]
    return parts


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The parts' prime directory, and tools/fetch_falco_plugins.py's build/plugins."""
    tmp = tmp_path_factory.mktemp("parts")
    commits, _ = fetcher.charmcraft_pins(ROOT / "charmcraft.yaml")
    upstream = tmp / "upstream"
    commit = _upstream_stand_in(upstream, fetcher.download_modules(commits))
    # craft-parts leaves its snapd socket and subprocess pipes to the garbage collector.
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("ignore", ResourceWarning)
        patch.setattr(packages, "_get_repository_for_platform", lambda: DummyRepository)
        lifecycle = craft_parts.LifecycleManager(
            {"parts": _plugin_parts(upstream, commit)},
            application_name="charmcraft",
            cache_dir=tmp / "cache",
            work_dir=tmp / "work",
        )
        with lifecycle.action_executor() as executor:
            executor.execute(lifecycle.plan(Step.PRIME))
        del lifecycle, executor
        gc.collect()
    ci = ROOT / "build" / "plugins"
    fetcher.build(ci)  # a no-op when tox's unit env built it already
    return tmp / "work" / "prime", ci


def _digests(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_the_parts_prime_exactly_the_bundle_the_charm_reads_and_the_icon(built):
    prime, _ = built
    expected = {f"{PAYLOAD_DIR}/{name}" for name in (*PLUGIN_FILES, STOCK_RULES_FILE)}

    assert set(_digests(prime)) == expected | {"icon.svg"}  # and not the build script
    assert (prime / "icon.svg").read_bytes() == (ROOT / "icon.svg").read_bytes()


def test_the_parts_and_ci_build_the_same_bytes(built):
    prime, ci = built
    ci_files = {
        f"{PAYLOAD_DIR}/{name}": digest
        for name, digest in _digests(ci).items()
        if not name.startswith(".")
    }

    assert {name: digest for name, digest in _digests(prime).items() if name != "icon.svg"} == (
        ci_files
    )
