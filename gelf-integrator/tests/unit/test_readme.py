"""The README's options table says what charmcraft.yaml declares: names, types and defaults."""

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parents[2]


def options_table() -> dict[str, tuple[str, str]]:
    section = (HERE / "README.md").read_text().split("## Options\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("| `")]
    return {name.strip().strip("`"): (kind.strip(), value.strip()) for name, kind, value in rows}


def test_the_options_table_matches_charmcraft_yaml():
    declared = yaml.safe_load((HERE / "charmcraft.yaml").read_text())["config"]["options"]

    documented = options_table()

    assert set(documented) == set(declared)
    for name, option in declared.items():
        default = f"`{option['default']!r}`" if "default" in option else "unset"
        default = default.replace("'", '"')
        assert documented[name] == (option["type"], default), name
