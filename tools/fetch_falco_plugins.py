"""Build the Falco plugins for the tests into build/plugins/, from the source charmcraft pins.

CI reaches the Go module proxy but not GitHub, so this takes the two plugin modules from the proxy
at the versions in tools/falco-plugins/go.mod, checked against its go.sum, makes sure the proxy's
record of their origin names the commits charmcraft.yaml pins, and runs the script charmcraft
runs (tools/build-falco-plugins) on them. A build from the same inputs is reused. Any failure
exits non-zero: tests never run against missing or stale plugins.

Usage: python tools/fetch_falco_plugins.py [OUT_DIR]   (default: build/plugins)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PINS_MODULE = ROOT / "tools" / "falco-plugins"
BUILD_SCRIPT = ROOT / "tools" / "build-falco-plugins"
OUTPUTS = ("libk8saudit.so", "libjson.so", "k8s_audit_rules.yaml")
STAMP = ".falco-k8s-build.json"
UPSTREAM = "https://github.com/falcosecurity/plugins"
RULES_SHA_VAR = "K8S_AUDIT_RULES_SHA256"


class BuildError(Exception):
    """Why the plugins could not be fetched or built, for the CI log."""


def module_path(name: str) -> str:
    """The Go module of falcosecurity/plugins' plugin ``name``."""
    return f"github.com/falcosecurity/plugins/plugins/{name}"


def charmcraft_pins(charmcraft_yaml: Path) -> tuple[dict[str, str], str]:
    """The commit of each plugin part, and the rules sha256, as charmcraft.yaml pins them."""
    parts = yaml.safe_load(charmcraft_yaml.read_text())["parts"]
    commits = {name: parts[f"{name}-plugin"]["source-commit"] for name in ("k8saudit", "json")}
    environment = parts["k8saudit-plugin"].get("build-environment", [])
    rules_sha = next((env[RULES_SHA_VAR] for env in environment if RULES_SHA_VAR in env), "")
    if not rules_sha or not all(commits.values()):
        raise BuildError(f"charmcraft.yaml lacks a plugin commit or {RULES_SHA_VAR}")
    return commits, rules_sha


def _go(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    try:
        # The Go toolchain on PATH (as CI provides it), with our own arguments.
        result = subprocess.run(  # noqa: S603
            ["go", *args],  # noqa: S607
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise BuildError(f"cannot run go (Go >= 1.24 and a C compiler are needed): {exc}") from exc
    if result.returncode != 0:
        raise BuildError(f"go {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _json_stream(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    index = 0
    while index < len(text.rstrip()):
        obj, index = decoder.raw_decode(text, index)
        objects.append(obj)
        while index < len(text) and text[index].isspace():
            index += 1
    return objects


def download_modules(commits: dict[str, str]) -> dict[str, Path]:
    """Download each plugin module (go.sum-checked); return its read-only directory."""
    go_sum = (PINS_MODULE / "go.sum").read_text().splitlines()
    paths = {module_path(name): name for name in commits}
    dirs: dict[str, Path] = {}
    try:
        output = _go("mod", "download", "-json", *paths, cwd=PINS_MODULE)
    except BuildError as exc:
        raise BuildError(f"the Go module proxy did not serve the pinned plugins: {exc}") from None
    for module in _json_stream(output):
        name = paths[module["Path"]]
        if module.get("Error"):
            raise BuildError(f"{module['Path']}: {module['Error']}")
        if f"{module['Path']} {module['Version']} {module['Sum']}" not in go_sum:
            raise BuildError(f"{module['Path']} {module['Version']} is not in go.sum")
        check_origin(name, module, commits[name])
        dirs[name] = Path(module["Dir"])
    return dirs


def check_origin(name: str, module: dict[str, Any], commit: str) -> None:
    """Where the proxy recorded the module's origin, it must be charmcraft.yaml's commit."""
    origin = json.loads(Path(module["Info"]).read_text()).get("Origin")
    if not origin:
        print(f"falco plugins: proxy records no origin for {name}; go.sum alone vouches for it")
        return
    expected = {"URL": UPSTREAM, "Subdir": f"plugins/{name}", "Hash": commit}
    found = {key: origin.get(key) for key in expected}
    if found != expected:
        raise BuildError(
            f"{module['Path']} {module['Version']} comes from {found}, but charmcraft.yaml "
            f"pins {expected}: update tools/falco-plugins/go.mod and charmcraft.yaml together"
        )


def build_key(commits: dict[str, str], rules_sha: str) -> str:
    """A digest of every input of the build: the same key means the same plugins."""
    digest = hashlib.sha256()
    for path in (PINS_MODULE / "go.mod", PINS_MODULE / "go.sum", BUILD_SCRIPT):
        digest.update(path.read_bytes())
    digest.update(json.dumps([commits, rules_sha], sort_keys=True).encode())
    digest.update(_go("env", "GOVERSION", "GOOS", "GOARCH", "CC", cwd=ROOT).encode())
    return digest.hexdigest()


def _file_digests(out: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((out / name).read_bytes()).hexdigest()
        for name in OUTPUTS
        if (out / name).is_file()
    }


def is_up_to_date(out: Path, key: str) -> bool:
    """Whether ``out`` holds all outputs, unchanged since a build from inputs ``key``."""
    try:
        stamp = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return False
    files = _file_digests(out)
    return stamp.get("key") == key and len(files) == len(OUTPUTS) and stamp.get("files") == files


def _writable_copy(source: Path, target: Path) -> None:
    """Copy a module out of Go's read-only module cache, so the copy can be built and removed."""
    shutil.copytree(source, target)
    for path in (target, *target.rglob("*")):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def build(out: Path) -> None:
    """Fetch and build the plugins into ``out`` unless it already holds this very build."""
    commits, rules_sha = charmcraft_pins(ROOT / "charmcraft.yaml")
    key = build_key(commits, rules_sha)
    pins = ", ".join(f"{name} {commit[:12]}" for name, commit in commits.items())
    if is_up_to_date(out, key):
        print(f"falco plugins: {out} is up to date ({pins})")
        return
    started = time.monotonic()
    module_dirs = download_modules(commits)
    out.mkdir(parents=True, exist_ok=True)
    (out / STAMP).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        args: list[str] = []
        for name, source in module_dirs.items():
            _writable_copy(source, Path(scratch) / name)
            args.append(f"{name}={Path(scratch) / name}")
        env = {**os.environ, RULES_SHA_VAR: rules_sha}
        command = [str(BUILD_SCRIPT), str(out), *args]
        result = subprocess.run(command, env=env, check=False)  # noqa: S603 - the repo's script
        if result.returncode != 0:
            raise BuildError(f"tools/build-falco-plugins exited with {result.returncode}")
    (out / STAMP).write_text(json.dumps({"key": key, "files": _file_digests(out)}, indent=1))
    print(f"falco plugins: built {pins} into {out} in {time.monotonic() - started:.0f} s")


def main() -> int:
    """Build into the directory named on the command line, or build/plugins."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "plugins"
    try:
        build(out.resolve())
    except BuildError as exc:
        print(f"falco plugins: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
