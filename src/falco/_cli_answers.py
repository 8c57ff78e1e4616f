"""Read what the Falco binary prints: a dry-run's load errors and the ``-L`` rules listing.

Pure: text in, plain data out. The formats are Falco 0.44.1's: ``rule_loader.cpp``
(``result::as_verbose_string``, ``context::as_string`` and ``context::snippet``) for load
errors, ``falco_engine.cpp`` for the listing.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, cast

# Falco's log timestamp: ctime style (`Tue Nov  7 05:07:26 2026: `) or ISO 8601.
_TIMESTAMP = re.compile(
    r"^(?:[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}|\d{4}-\d\d-\d\dT\S+): "
)
# An error's code line: `LOAD_ERR_<CODE> (<description>): <message>`.
_LOAD_ERROR = re.compile(r"^LOAD_ERR_[A-Z_]+ \([^()]*\): ")
# One location of an error's context: `In rules content: (file:0:0)`, then indented ones such
# as `    rule 'Allow CI': (file:2:2)` or `    condition expression: (ka.verb=...:1:5)`.
_LOCATION = re.compile(r"^(?:In |    )(?P<kind>[a-z ]+?)(?: '(?P<name>.*)')?: \(.*:\d+:\d+\)$")
_NAMED_KINDS = ("rule", "macro", "list")
_FENCE = "------"
_STATUS_MAX = 200


def first_error_line(falco_output: str) -> str:
    """Pick the most useful single line from Falco's dry-run output for a Blocked status message.

    Preference: the first `LOAD_ERR_...` line ending an error block (prefixed with the rule,
    macro or list it is about), then any line of that shape, then the first `Error:` line, then
    the last line. The error line is found by the shape of
    the whole error block (locations, fenced snippet, code line), never by counting fences:
    schema warnings come between fences too, and the snippet quotes the operator's own text.
    """
    lines = [_TIMESTAMP.sub("", line).rstrip() for line in falco_output.splitlines()]
    for index, line in enumerate(lines):
        if _LOAD_ERROR.match(line) and (item := _error_item(lines, index)) is not None:
            return _shorten(item + line)
    lines = [line.strip() for line in lines if line.strip()]
    errors = [line for line in lines if _LOAD_ERROR.match(line)]  # not in a block: still best
    errors += [line for line in lines if line.startswith("Error:")]
    if errors:
        return _shorten(errors[0])
    return _shorten(lines[-1]) if lines else "falco exited without output"


def _error_item(lines: list[str], code: int) -> str | None:
    """The `rule 'X': ` an error block is about ("" when none), or None if ``code`` ends none.

    A block is: its locations, a fence, the snippet (one quoted line, then a caret line unless
    the position is past it; or one `<No context ...>` line), a fence, and the code line.
    """
    if code < 1 or lines[code - 1] != _FENCE:
        return None
    for snippet_lines in (2, 1):
        fence = code - 2 - snippet_lines
        if fence >= 1 and lines[fence] == _FENCE and _LOCATION.match(lines[fence - 1]):
            item = ""
            for line in reversed(lines[:fence]):
                location = _LOCATION.match(line)
                if location is None:
                    break
                if location["kind"] in _NAMED_KINDS and location["name"] is not None and not item:
                    item = f"{location['kind']} '{location['name']}': "
                if line.startswith("In "):
                    break
            return item
    return None


def _shorten(line: str) -> str:
    """Keep a status message short: Juju shows it in one line of `juju status`."""
    if len(line) <= _STATUS_MAX:
        return line
    return line[: _STATUS_MAX - 3] + "..."


class RulesListingError(ValueError):
    """Falco's answer could not be read."""


@dataclass(frozen=True)
class LoadedRule:
    """One rule as Falco loaded it."""

    name: str
    priority: str
    source: str
    enabled: bool
    tags: tuple[str, ...]

    def as_result(self) -> dict[str, Any]:
        """Plain JSON-ready form for action results."""
        result = asdict(self)
        result["tags"] = list(self.tags)
        return result


def parse_rules_listing(stdout: str) -> list[LoadedRule]:
    """Parse the JSON document ``falco -L -o json_output=true`` prints on stdout."""
    document = _last_json_object(stdout)
    rules = document.get("rules")
    if not isinstance(rules, list):
        raise RulesListingError("falco -L output has no rules list")
    loaded: list[LoadedRule] = []
    for entry in cast("list[Any]", rules):
        info = cast("dict[str, Any]", entry).get("info") if isinstance(entry, dict) else None
        if not isinstance(info, dict):
            raise RulesListingError("falco -L output has a rule without info")
        info = cast("dict[str, Any]", info)
        loaded.append(
            LoadedRule(
                name=str(info.get("name", "")),
                priority=str(info.get("priority", "")),
                source=str(info.get("source", "")),
                enabled=bool(info.get("enabled", True)),
                tags=tuple(str(tag) for tag in cast("list[Any]", info.get("tags") or [])),
            )
        )
    return loaded


def _last_json_object(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.lstrip().startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RulesListingError(f"falco -L printed invalid JSON: {exc}") from None
            if isinstance(value, dict):
                return cast("dict[str, Any]", value)
    raise RulesListingError("falco -L printed no JSON document")
