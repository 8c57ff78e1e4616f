"""The plugin build: charmcraft.yaml and CI pin the same source and run the same script."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import fetch_falco_plugins as fetcher
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "tools" / "build-falco-plugins"
RULES_SHA256 = "fa53280e337db6edaeb44cf49fbd1be4349f3c48e3cd0017c2575097df901a1e"
PINS = {  # plugin: (commit, module version)
    "k8saudit": ("43ec9491a5bf25140868a182734a022625eeb9dd", "v0.18.0"),
    "json": ("c1ac9ce767951f48b067e2e2e3b8e7150cbba358", "v0.7.4"),
}


@pytest.fixture(scope="module")
def parts() -> dict[str, dict[str, object]]:
    return yaml.safe_load((ROOT / "charmcraft.yaml").read_text())["parts"]


def test_charmcraft_builds_each_plugin_from_its_pinned_commit(parts):
    for name, (commit, _) in PINS.items():
        part = parts[f"{name}-plugin"]
        assert part["source"] == "https://github.com/falcosecurity/plugins.git"
        assert (part["source-type"], part["source-commit"]) == ("git", commit)
        assert part["after"] == ["falco-plugins-build-script"]
        assert part["override-build"].startswith('"$CRAFT_STAGE/build-falco-plugins"')
        assert f'{name}="$CRAFT_PART_SRC_WORK/plugins/{name}"' in part["override-build"]


def test_charmcraft_stages_the_repos_build_script_and_ships_none_of_it(parts):
    script_part = parts["falco-plugins-build-script"]

    assert (script_part["plugin"], script_part["source"]) == ("dump", "tools")
    assert script_part["stage"] == ["build-falco-plugins"]
    assert script_part["prime"] == ["-build-falco-plugins"]


def test_charmcraft_pins_the_rules_sha256_and_downloads_nothing_unpinned(parts):
    text = (ROOT / "charmcraft.yaml").read_text()

    assert fetcher.charmcraft_pins(ROOT / "charmcraft.yaml") == (
        {name: commit for name, (commit, _) in PINS.items()},
        RULES_SHA256,
    )
    assert not re.search(r"\b(curl|wget)\b|\.tar\.gz|\"\"", text)
    assert (
        re.findall(r"https?://\S+", text) == ["https://github.com/falcosecurity/plugins.git"] * 2
    )


def test_ci_requires_the_same_versions_checked_by_go_sum():
    go_mod = (ROOT / "tools" / "falco-plugins" / "go.mod").read_text()
    go_sum = (ROOT / "tools" / "falco-plugins" / "go.sum").read_text().splitlines()

    for name, (_, version) in PINS.items():
        module = fetcher.module_path(name)
        assert f"\t{module} {version}\n" in go_mod
        assert any(line.startswith(f"{module} {version} h1:") for line in go_sum)
        assert any(line.startswith(f"{module} {version}/go.mod h1:") for line in go_sum)


def _module(tmp_path: Path, origin: dict[str, str] | None) -> dict[str, str]:
    info = tmp_path / "v0.18.0.info"
    info.write_text(json.dumps({"Version": "v0.18.0", **({"Origin": origin} if origin else {})}))
    return {"Path": fetcher.module_path("k8saudit"), "Version": "v0.18.0", "Info": str(info)}


def test_a_proxy_origin_of_another_commit_stops_the_build(tmp_path):
    commit = PINS["k8saudit"][0]
    origin = {"VCS": "git", "URL": fetcher.UPSTREAM, "Subdir": "plugins/k8saudit"}

    fetcher.check_origin("k8saudit", _module(tmp_path, {**origin, "Hash": commit}), commit)
    fetcher.check_origin("k8saudit", _module(tmp_path, None), commit)  # go.sum alone
    with pytest.raises(fetcher.BuildError, match=r"charmcraft\.yaml pins"):
        fetcher.check_origin("k8saudit", _module(tmp_path, {**origin, "Hash": "0" * 40}), commit)


def test_a_changed_output_is_rebuilt(tmp_path):
    for name in fetcher.OUTPUTS:
        (tmp_path / name).write_bytes(name.encode())
    files = {name: hashlib.sha256(name.encode()).hexdigest() for name in fetcher.OUTPUTS}
    (tmp_path / fetcher.STAMP).write_text(json.dumps({"key": "k", "files": files}))

    assert fetcher.is_up_to_date(tmp_path, "k")
    assert not fetcher.is_up_to_date(tmp_path, "other inputs")
    (tmp_path / "libjson.so").write_bytes(b"tampered")
    assert not fetcher.is_up_to_date(tmp_path, "k")


def _fake_module(root: Path, module: str, rules: bytes) -> Path:
    (root / "rules").mkdir(parents=True)
    (root / "go.mod").write_text(f"module {module}\n\ngo 1.23\n")
    (root / "rules" / "k8s_audit_rules.yaml").write_bytes(rules)
    return root


def _run_build(tmp_path: Path, source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD_SCRIPT), str(tmp_path / "out"), f"k8saudit={source}"],
        env={"PATH": "/usr/bin:/bin", "K8S_AUDIT_RULES_SHA256": RULES_SHA256},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_build_script_refuses_rules_that_do_not_match_the_pin(tmp_path):
    source = _fake_module(tmp_path / "src", fetcher.module_path("k8saudit"), b"- rule: x\n")

    result = _run_build(tmp_path, source)

    assert result.returncode != 0
    assert f"does not match the pinned sha256 {RULES_SHA256}" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_the_build_script_refuses_another_module(tmp_path):
    source = _fake_module(tmp_path / "src", "example.com/not/k8saudit", b"")

    result = _run_build(tmp_path, source)

    assert result.returncode != 0
    assert "is not module github.com/falcosecurity/plugins/plugins/k8saudit" in result.stderr
