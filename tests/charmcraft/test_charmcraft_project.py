"""charmcraft 4.5 accepts the project: its own model validates the merged charmcraft.yaml.

charmcraft merges metadata.yaml, config.yaml and actions.yaml into charmcraft.yaml before
validating (charmcraft/services/project.py); this does the same with its own functions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import craft_parts
import pytest
import yaml
from charmcraft.models.metadata import CharmMetadataLegacy
from charmcraft.models.project import CharmcraftProject
from charmcraft.parts import setup_parts
from craft_parts.sources.git_source import GitSourceModel

from charmcraft import extensions, preprocess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())
    extensions.apply_extensions(ROOT, data)
    preprocess.add_default_parts(data)
    preprocess.add_config(ROOT, data)
    preprocess.add_actions(ROOT, data)
    preprocess.add_metadata(ROOT, data)
    setup_parts()
    return data


# charmcraft 4.5's own validator reads its deprecated `charmhub` field on every project.
@pytest.mark.filterwarnings("ignore:The 'charmhub' field is deprecated:DeprecationWarning")
def test_charmcraft_project_model_accepts_the_merged_project(merged):
    project = CharmcraftProject.unmarshal(copy.deepcopy(merged))

    assert project.name == "falco-k8s"
    assert set(project.parts) == {
        "charm",
        "icon",
        "falco-plugins-build-script",
        "k8saudit-plugin",
        "json-plugin",
    }


def test_every_part_passes_craft_parts_validation(merged):
    for name, part in merged["parts"].items():
        craft_parts.validate_part(copy.deepcopy(part))
        if part.get("source-type") == "git":
            source = {key: value for key, value in part.items() if key.startswith("source")}
            model = GitSourceModel.model_validate(source)
            assert len(model.source_commit or "") == 40, name
            assert (model.source_tag, model.source_branch, model.source_depth) == (None, None, 0)


@pytest.mark.filterwarnings("ignore:The 'charmhub' field is deprecated:DeprecationWarning")
def test_the_model_refuses_a_mistyped_part_key(merged):
    broken = copy.deepcopy(merged)
    broken["parts"]["json-plugin"]["build-snapz"] = ["go/1.26/stable"]

    with pytest.raises(ValueError, match="build-snapz"):
        CharmcraftProject.unmarshal(broken)


def test_metadata_yaml_gives_charmhub_every_link():
    """Charmcraft packs metadata.yaml as it is (services/package.py), so the links live there."""
    metadata = CharmMetadataLegacy.unmarshal(yaml.safe_load((ROOT / "metadata.yaml").read_text()))

    links = [metadata.docs, metadata.issues, metadata.source, metadata.website]
    urls = [url for link in links for url in (link if isinstance(link, list) else [link])]
    assert len(urls) == len(links)
    assert all(url is not None and url.scheme == "https" for url in urls), links


def test_the_model_refuses_a_link_that_is_not_a_url():
    broken = yaml.safe_load((ROOT / "metadata.yaml").read_text()) | {"issues": "by mail"}

    with pytest.raises(ValueError, match="issues"):
        CharmMetadataLegacy.unmarshal(broken)


def test_the_icon_is_a_100_pixel_canvas_with_a_circle():
    """Charmhub's icon rules (charmcraft docs, icon.svg file): 100x100, a flat circle, a logo."""
    svg = ElementTree.parse(ROOT / "icon.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    circle = svg.find(f"{ns}circle")

    assert svg.tag == f"{ns}svg"
    assert [svg.get(key) for key in ("width", "height", "viewBox")] == [
        "100",
        "100",
        "0 0 100 100",
    ]
    assert circle is not None
    assert [circle.get(key) for key in ("cx", "cy", "r")] == ["50", "50", "50"]
