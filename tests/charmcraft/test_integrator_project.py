"""charmcraft 4.5 accepts gelf-integrator's charmcraft.yaml: links and `type: secret` options."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from charmcraft.models.config import JujuConfig
from charmcraft.models.project import CharmcraftProject

from charmcraft import preprocess

INTEGRATOR = Path(__file__).resolve().parents[2] / "gelf-integrator"


# charmcraft 4.5's own validator reads its deprecated `charmhub` field on every project.
@pytest.mark.filterwarnings("ignore:The 'charmhub' field is deprecated:DeprecationWarning")
def test_charmcraft_accepts_the_integrator_with_links_and_secret_options():
    data = yaml.safe_load((INTEGRATOR / "charmcraft.yaml").read_text())
    preprocess.add_default_parts(data)

    project = CharmcraftProject.unmarshal(copy.deepcopy(data))

    assert project.name == "gelf-integrator"
    assert project.links is not None
    assert project.links.source
    assert project.links.issues
    assert project.links.website
    assert project.links.documentation
    options = JujuConfig.model_validate(project.config).options
    assert options is not None
    assert {name for name, option in options.items() if option.type == "secret"} == {
        "auth_secret",
        "api_token_secret",
    }
