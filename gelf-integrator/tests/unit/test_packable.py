"""The integrator's directory is a charm on its own: it needs no file from the rest of the repo."""

import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import yaml

HERE = Path(__file__).resolve().parents[2]


def test_the_charm_imports_from_a_copy_of_its_directory_alone(tmp_path: Path):
    copy = tmp_path / "gelf-integrator"
    shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns("tests", "__pycache__", ".*"))
    probe = (
        "import sys; sys.path[:0] = ['src', 'lib']; import charm, charms.falco_k8s.v0.gelf as g;"
        "print(charm.__file__); print(g.__file__)"
    )

    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=copy, capture_output=True, text=True, check=True
    )

    for path in found.stdout.split():
        assert Path(path).resolve().is_relative_to(copy)
    assert (copy / "uv.lock").is_file()


def test_charmcraft_yaml_declares_no_workload_and_provides_gelf():
    project = yaml.safe_load((HERE / "charmcraft.yaml").read_text())

    assert project["type"] == "charm"
    assert "containers" not in project
    assert "resources" not in project
    assert project["provides"] == {"gelf": {"interface": "gelf"}}
    assert set(project["config"]["options"]) == {
        "gelf_url",
        "auth_header",
        "auth_secret",
        "ca_cert",
        "max_message_bytes",
        "api_url",
        "api_token_secret",
    }
    assert project["config"]["options"]["max_message_bytes"]["default"] == 65536


def test_credentials_are_juju_user_secrets_not_strings():
    options = yaml.safe_load((HERE / "charmcraft.yaml").read_text())["config"]["options"]

    for name in ("auth_secret", "api_token_secret"):
        assert options[name]["type"] == "secret"
        assert "default" not in options[name]


def test_the_charm_has_links_and_an_icon():
    project = yaml.safe_load((HERE / "charmcraft.yaml").read_text())

    assert set(project["links"]) == {"documentation", "issues", "source", "website"}
    urls = [
        project["links"]["documentation"],
        *(u for k in ("issues", "source", "website") for u in project["links"][k]),
    ]
    assert all(url.startswith("https://") for url in urls)
    icon = ElementTree.parse(HERE / "icon.svg").getroot()
    assert icon.tag == "{http://www.w3.org/2000/svg}svg"
    assert (icon.get("width"), icon.get("height")) == ("100", "100")
