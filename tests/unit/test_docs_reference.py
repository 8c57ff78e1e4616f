"""The reference pages say what the charm declares and does, so they cannot drift from it.

Each page's table is read back and compared with the file or code it describes: config.yaml,
actions.yaml, metadata.yaml, the forwarder's exported series, the shipped alert rules, the
results get-webhook-config returns and the status texts in the code. Every link in the docs
leads to a file and heading that exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cos_rules import FALCO_METRICS, forwarder_metrics, intake_metrics

from cos._publish import LOKI_RULES_DIR, OTLP_RULES_DIR, PROMETHEUS_RULES_DIR
from webhook._apiserver_side import webhook_action_result

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")],
)


def yaml_file(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table row whose first cell is code (`name`), backticks kept."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| `")
    ]


def name_of(cell: str) -> str:
    return cell.strip("`")


def sections(text: str) -> dict[str, str]:
    """The text under each ``## `name` `` heading, by name."""
    parts = re.split(r"^## `([^`]+)`\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_config_page_lists_every_option_with_its_type_and_default():
    declared = yaml_file("config.yaml")["options"]

    rows = table_rows((REFERENCE / "config.md").read_text())

    documented = {name_of(row[0]): row for row in rows}
    assert list(documented) == list(declared)
    for name, option in declared.items():
        _, kind, default, description = documented[name]
        assert kind == option["type"], name
        assert yaml.safe_load(default.strip("`")) == option["default"], name
        assert len(description) > 30, name


def test_the_actions_page_lists_every_action_and_its_params():
    declared = yaml_file("actions.yaml")

    documented = sections((REFERENCE / "actions.md").read_text())

    assert list(documented) == list(declared)
    for action, spec in declared.items():
        params = {
            name_of(row[0]): row[1]
            for row in table_rows(documented[action])
            if row[1] in ("string", "boolean", "integer", "number")
        }
        expected = {name: param["type"] for name, param in spec.get("params", {}).items()}
        assert params == expected, action


def test_the_actions_page_lists_what_get_webhook_config_returns():
    returned = webhook_action_result("model", "app", "kubeconfig", "policy")

    section = sections((REFERENCE / "actions.md").read_text())["get-webhook-config"]

    assert [name_of(row[0]) for row in table_rows(section)] == list(returned)


def test_the_relations_page_lists_every_endpoint_with_its_role_interface_and_limit():
    metadata = yaml_file("metadata.yaml")
    declared = {
        name: (role, spec["interface"], str(spec.get("limit", "")))
        for role in ("requires", "provides", "peers")
        for name, spec in metadata.get(role, {}).items()
    }

    rows = table_rows((REFERENCE / "relations.md").read_text())

    documented = {
        name_of(row[0]): (row[1], name_of(row[2]), row[3]) for row in rows if len(row) == 5
    }
    assert documented == declared


def test_the_metrics_page_lists_every_forwarder_and_intake_series_and_only_falcos_that_exist():
    text = (REFERENCE / "metrics.md").read_text()
    named = {name_of(row[0]) for row in table_rows(text)}

    assert {name for name in named if name.startswith("falco_forwarder_")} == forwarder_metrics()
    assert {name for name in named if name.startswith("audit_intake_")} == intake_metrics()
    falco = set(re.findall(r"\bfalcosecurity_[a-z0-9_]+", text))
    assert falco
    assert falco <= FALCO_METRICS


def test_the_metrics_page_names_every_shipped_alert_rule():
    text = (REFERENCE / "metrics.md").read_text()
    shipped = {
        match
        for directory in (PROMETHEUS_RULES_DIR, LOKI_RULES_DIR, OTLP_RULES_DIR)
        for path in directory.glob("*.rules")
        for match in re.findall(r"^\s*- alert: (\S+)$", path.read_text(), re.MULTILINE)
    }

    assert shipped
    assert {alert for alert in shipped if f"`{alert}`" not in text} == set()


def code_text() -> str:
    return "\n".join(path.read_text() for path in (ROOT / "src").rglob("*.py"))


def status_messages() -> list[str]:
    return [name_of(row[0]) for row in table_rows((REFERENCE / "statuses.md").read_text())]


@pytest.mark.parametrize("message", status_messages())
def test_every_status_on_the_statuses_page_is_one_the_code_writes(message: str):
    # `<…>` is a value and `…` text left out; the literal parts must be in the code.
    literal = [part.strip(" ,") for part in re.split(r"<[^>]*>|…", message)]
    code = code_text()

    assert [part for part in literal if len(part) >= 4 and part not in code] == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_link_leads_to_a_file_and_heading_that_exist(page: Path):
    broken: list[str] = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and anchor not in anchors(linked)):
            broken.append(target)

    assert broken == []
