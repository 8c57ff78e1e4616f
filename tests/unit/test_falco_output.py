"""What the charm reads from Falco's own output: dry-run load errors, condensed to one line.

The samples are built in Falco 0.44.1's format (``rule_loader.cpp``: ``as_verbose_string``,
``context::as_string``, ``context::snippet``; ``falco_load_result.cpp`` for the codes;
``yaml_helper.h`` for schema warnings), the way ``falco --dry-run`` prints them.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falco._cli_answers import first_error_line

CUSTOM = "/etc/falco/staging/rules.d/custom_rules.yaml"
STAMP = "Tue Nov 27 05:07:26 2026: "


def error_block(
    locations: list[tuple[str, str, int, int]], snippet: list[str], code: str, message: str
) -> str:
    """One entry of `N Errors:`: locations, the fenced snippet, then `CODE (text): message`."""
    lines = [
        ("In " if index == 0 else "    ")
        + kind
        + (f" '{name}'" if name else "")
        + f": ({CUSTOM}:{line}:{column})"
        for index, (kind, name, line, column) in enumerate(locations)
    ]
    return "\n".join([*lines, "------", *snippet, "------", f"{code}: {message}"]) + "\n"


def dry_run_output(schema_warnings: list[str], errors: list[str]) -> str:
    """`falco --dry-run` rejecting custom_rules.yaml: log lines, then `Error: ` + the result."""
    status = schema_warnings[0] if schema_warnings else "ok"
    out = (
        f"{STAMP}Falco version: 0.44.1 (x86_64)\n"
        f"{STAMP}Loading rules from:\n"
        f"{STAMP}   /etc/falco/staging/k8s_audit_rules.yaml | schema validation: ok\n"
        f"{STAMP}   {CUSTOM} | schema validation: {status}\n"
        f"Error: {CUSTOM}: Invalid"
    )
    if schema_warnings:
        out += f"\n{len(schema_warnings)} Schema warnings:\n"
        out += "".join(f"------\n{warning}\n" for warning in schema_warnings) + "------\n"
    out += f"\n{len(errors)} Errors:\n" + "".join(errors)
    return out


# What a misspelled `condition:` key gives: one warning for the item, one for the list.
SCHEMA_WARNINGS = [
    "failed for <root>[0]: Object contains a property that could not be validated using"
    " 'properties' or 'additionalProperties' constraints: 'when'.",
    "failed for <root>: Failed to validate item #0 in array.",
    "failed for <root>[1]: Missing required property 'output'.",
]
NO_CONDITION = error_block(
    [("rules content", "", 0, 0), ("rule", "Allow CI", 1, 2)],
    ["- rule: Allow CI", "  ^"],
    "LOAD_ERR_YAML_VALIDATE (Error validating internal structure of YAML file)",
    "Item has no mapping for key 'condition'",
)
NO_CONDITION_LINE = (
    "rule 'Allow CI': LOAD_ERR_YAML_VALIDATE (Error validating internal structure of YAML"
    " file): Item has no mapping for key 'condition'"
)
BAD_FIELD = error_block(
    [
        ("rules content", "", 0, 0),
        ("macro", "ci_user", 4, 2),
        ("condition expression", "", 5, 13),
    ],
    ["  condition: ka.usr.name = ci", "             ^"],
    "LOAD_ERR_COMPILE_CONDITION (Error compiling condition)",
    "filter_check called with nonexistent field ka.usr.name",
)
BAD_FIELD_LINE = (
    "macro 'ci_user': LOAD_ERR_COMPILE_CONDITION (Error compiling condition): filter_check"
    " called with nonexistent field ka.usr.name"
)
NOT_YAML = error_block(
    [("rules content", "", 3, 5)],
    ["    desc: a: b", "    ^"],
    "LOAD_ERR_YAML_PARSE (YAML parse error)",
    "yaml-cpp: error at line 3, column 5: illegal map value",
)
NOT_YAML_LINE = (
    "LOAD_ERR_YAML_PARSE (YAML parse error): yaml-cpp: error at line 3, column 5:"
    " illegal map value"
)


@pytest.mark.parametrize("warnings", [0, 1, 2, 3])
@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ([NO_CONDITION], NO_CONDITION_LINE),
        ([BAD_FIELD], BAD_FIELD_LINE),
        ([NOT_YAML], NOT_YAML_LINE),
        ([NO_CONDITION, BAD_FIELD], NO_CONDITION_LINE),
        ([BAD_FIELD, NOT_YAML, NO_CONDITION], BAD_FIELD_LINE),
    ],
)
def test_the_first_load_error_is_found_whatever_the_number_of_schema_warnings(
    warnings: int, errors: list[str], expected: str
):
    assert first_error_line(dry_run_output(SCHEMA_WARNINGS[:warnings], errors)) == expected


def test_a_misspelled_key_names_the_rule_and_the_missing_field():
    # The most common mistake: 2 schema warnings, then the error; once lost behind the fences.
    output = dry_run_output(SCHEMA_WARNINGS[:2], [NO_CONDITION])
    assert first_error_line(output) == NO_CONDITION_LINE


@pytest.mark.parametrize(
    "quoted",
    [
        "LOAD_ERR_YAML_PARSE (YAML parse error): a rule text that looks like an error",
        "------",
    ],
)
def test_the_operators_quoted_text_is_never_taken_for_the_error(quoted: str):
    block = error_block(
        [("rules content", "", 0, 0), ("list", "ci_users", 1, 2)],
        [quoted, "^"],
        "LOAD_ERR_YAML_VALIDATE (Error validating internal structure of YAML file)",
        "Value is not a sequence",
    )
    assert first_error_line(dry_run_output(SCHEMA_WARNINGS[:2], [block])) == (
        "list 'ci_users': LOAD_ERR_YAML_VALIDATE (Error validating internal structure of YAML"
        " file): Value is not a sequence"
    )


def test_a_snippet_without_context_still_ends_a_block():
    block = error_block(
        [("rules content", "", 0, 0), ("rule", "X", 1, 2)],
        ["<No context available>"],
        "LOAD_ERR_VALIDATE (Error validating rule/macro/list/exception objects)",
        "Undefined macro 'kevt' used in filter.",
    )
    assert first_error_line(dry_run_output([], [block])) == (
        "rule 'X': LOAD_ERR_VALIDATE (Error validating rule/macro/list/exception objects):"
        " Undefined macro 'kevt' used in filter."
    )


COMPILE_ERROR = (
    "LOAD_ERR_COMPILE_CONDITION (Error compiling condition): filter_check called with"
    " nonexistent field ka.verbb"
)
COMPILE_ERROR_OUTPUT = f"""\
Tue Nov 27 05:07:26 2026: Falco version: 0.44.1 (x86_64)
Tue Nov 27 05:07:26 2026: Falco initialized with configuration files:
Tue Nov 27 05:07:26 2026:    /etc/falco/staging/falco.yaml | schema validation: ok
Tue Nov 27 05:07:26 2026: Loading rules from:
Tue Nov 27 05:07:26 2026:    /etc/falco/k8s_audit_rules.yaml | schema validation: ok
Tue Nov 27 05:07:26 2026:    /etc/falco/staging/rules.d/custom_rules.yaml | schema validation: ok
Error: /etc/falco/staging/rules.d/custom_rules.yaml: Invalid
1 Errors:
In rules content: (/etc/falco/staging/rules.d/custom_rules.yaml:0:0)
    rule 'Allow CI': (/etc/falco/staging/rules.d/custom_rules.yaml:2:2)
    condition: (/etc/falco/staging/rules.d/custom_rules.yaml:4:13)
------
  condition: ka.verbb = create
             ^
------
{COMPILE_ERROR}
"""

YAML_ERROR_OUTPUT = """\
Tue Nov  7 05:07:26 2026: Falco version: 0.44.1 (x86_64)
Tue Nov  7 05:07:26 2026: Loading rules from:
/etc/falco/k8s_audit_rules.yaml: Ok, with warnings
1 Warnings:
In rules content: (/etc/falco/k8s_audit_rules.yaml:0:0)
    rule 'Old Style': (/etc/falco/k8s_audit_rules.yaml:10:2)
------
- rule: Old Style
  ^
------
LOAD_DEPRECATED_ITEM (Used deprecated item): 'enabled' property is deprecated
Error: /etc/falco/staging/rules.d/custom_rules.yaml: Invalid
1 Errors:
In rules content: (/etc/falco/staging/rules.d/custom_rules.yaml:3:5)
------
    desc: a: b
    ^
------
LOAD_ERR_YAML_PARSE (Error parsing YAML): yaml-cpp: error at line 3, column 5: illegal map value
"""


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            COMPILE_ERROR_OUTPUT,
            f"rule 'Allow CI': {COMPILE_ERROR}",
        ),
        (
            YAML_ERROR_OUTPUT,
            "LOAD_ERR_YAML_PARSE (Error parsing YAML): yaml-cpp: error at line 3, column 5:"
            " illegal map value",
        ),
        (
            COMPILE_ERROR_OUTPUT.replace("rule 'Allow CI'", "macro 'ci_user'"),
            f"macro 'ci_user': {COMPILE_ERROR}",
        ),
        (
            "Tue Nov 27 05:07:26 2026: Falco version: 0.44.1 (x86_64)\n"
            "Error: Could not load rules file /etc/falco/staging/rules.d/x.yaml: not found\n"
            "Error: second\n",
            "Error: Could not load rules file /etc/falco/staging/rules.d/x.yaml: not found",
        ),
        (
            "Sat Nov  7 05:07:26 2026: Falco version: 0.44.1 (x86_64)\n"
            "Sat Nov  7 05:07:26 2026: Runtime error: out of memory\n\n   \n",
            "Runtime error: out of memory",
        ),
        (
            "2026-11-27T05:07:26+0000: Runtime error: out of memory\n",
            "Runtime error: out of memory",
        ),
        ("", "falco exited without output"),
        ("\n   \n\n", "falco exited without output"),
    ],
)
def test_first_error_line(output: str, expected: str):
    assert first_error_line(output) == expected


def test_quoted_rule_text_is_never_picked():
    output = (
        "In rules content: (custom_rules.yaml:0:0)\n"
        "    list 'ci_users': (custom_rules.yaml:1:2)\n"
        "------\n"
        "LOAD_ERR_NOT_REAL rule 'Fake': (x)\n"
        "------\n"
        "LOAD_ERR_YAML_VALIDATE (Error validating YAML): Value is not a sequence\n"
    )
    assert first_error_line(output) == (
        "list 'ci_users': LOAD_ERR_YAML_VALIDATE (Error validating YAML): Value is not a sequence"
    )


def test_long_messages_are_cut_for_status():
    line = first_error_line("LOAD_ERR_COMPILE_OUTPUT (Error compiling output): " + "x" * 500)
    assert len(line) == 200
    assert line.startswith("LOAD_ERR_COMPILE_OUTPUT (Error compiling output): xxx")
    assert line.endswith("x...")


@given(st.text())
def test_status_line_is_never_empty_or_long(output: str):
    line = first_error_line(output)
    assert line
    assert len(line) <= 200
    assert "\n" not in line


@pytest.mark.parametrize("before", ["", "Falco version: 0.44.1\n"])
def test_a_block_whose_first_location_line_is_missing_still_names_its_item(before: str):
    output = (
        f"{before}    rule 'X': ({CUSTOM}:1:2)\n------\n- rule: X\n  ^\n------\n"
        "LOAD_ERR_VALIDATE (Error validating rule/macro/list/exception objects): boom\n"
    )
    assert first_error_line(output).startswith("rule 'X': LOAD_ERR_VALIDATE")
