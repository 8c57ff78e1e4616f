"""First gate for the `custom_rules` option, and the `disabled_rules` selection.

`check_custom_rules` catches the structural mistakes Falco's rule reader would reject (or, worse,
silently ignore) and names the item and line, before anything reaches the container. It mirrors
Falco's reader (`rule_loader_reader.cpp`) but not its condition compiler: fields, operators and
macro references stay the job of `falco --dry-run` (see `falco_output`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from constants import PRIORITIES
from falco._rules_listing import matches_wildcard

# Juju keeps config values in the controller database and sends the whole value to every unit on
# each change, and Falco re-reads the file at every hot reload. Falco's complete stock k8s audit
# ruleset is about 35 KiB, so 1 MiB is ample for real custom rules while bounding those costs
# (the pure-Python YAML parse below needs about 2 s for 1 MiB: the worst case for a hook).
MAX_CUSTOM_RULES_BYTES = 1_048_576

# libyaml's parser, where PyYAML has it, is ~10 times faster than the pure-Python one and keeps
# the same node marks, so messages still give the line.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_KINDS = ("rule", "macro", "list", "required_engine_version", "required_plugin_versions")
# Falco's parse_priority: case-insensitive, with "info" as a legacy alias of "informational".
_PRIORITIES = frozenset(PRIORITIES) | {"info"}
_NEW_RULE_FIELDS = ("condition", "output", "desc", "priority")
_AUDIT_SOURCE = "k8s_audit"
# What each kind lets `override` append to and replace (Falco's overridable sets).
_RULE_APPENDABLE = frozenset({"condition", "output", "desc", "tags", "exceptions"})
_OVERRIDABLE: dict[str, dict[str, frozenset[str]]] = {
    "rule": {
        "append": _RULE_APPENDABLE,
        "replace": _RULE_APPENDABLE
        | {"priority", "enabled", "warn_evttypes", "skip-if-unknown-filter"},
    },
    "macro": {"append": frozenset({"condition"}), "replace": frozenset({"condition"})},
    "list": {"append": frozenset({"items"}), "replace": frozenset({"items"})},
}
# Booleans as Falco's YAML library (yaml-cpp) decodes them, in lower, UPPER or Capital case.
_BOOLEANS = {
    **dict.fromkeys(("y", "yes", "true", "on"), True),
    **dict.fromkeys(("n", "no", "false", "off"), False),
}
# Anything outside YAML's printable set: the YAML reader would refuse it, and it means binary data.
_NOT_TEXT = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NULL_TAG = "tag:yaml.org,2002:null"


class CustomRulesError(ValueError):
    """Operator-fixable problem in custom_rules; str() is the message shown in Blocked status."""


@dataclass(frozen=True)
class _Item:
    """A top-level rules item, with what an error message needs to point the operator at it."""

    index: int
    line: int
    kind: str
    name: str | None
    fields: dict[str, Node]

    def error(self, problem: str) -> CustomRulesError:
        """Build the error for this item; every item message has the same shape."""
        label = f"{self.kind} '{self.name}'" if self.name else self.kind
        return _item_error(self.index, self.line, label, problem)


@dataclass(frozen=True)
class RuleNames:
    """The rule names and tags a rules file defines, for matching `disabled_rules` against."""

    names: tuple[str, ...] = ()
    rule_tags: tuple[frozenset[str], ...] = ()
    """Each rule's tags, in the order of ``names``."""

    @property
    def tags(self) -> frozenset[str]:
        """Every tag some rule carries."""
        return frozenset[str]().union(*self.rule_tags)


@dataclass(frozen=True)
class CustomRules:
    """custom_rules once checked: what to write to rules.d ("" when blank), and its rules."""

    text: str
    rules: RuleNames


def check_custom_rules(text: str) -> str:
    """Return what to write to rules.d: the text unchanged, or "" when it is blank.

    Blank means no content at all: whitespace, comments or null YAML documents.

    Raises:
        CustomRulesError: the first problem found, naming the item and its line.
    """
    return read_custom_rules(text).text


def read_custom_rules(text: str) -> CustomRules:
    """Check custom_rules as `check_custom_rules` does, and index its rules from the same parse.

    Raises:
        CustomRulesError: the first problem found, naming the item and its line.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CUSTOM_RULES_BYTES:
        raise CustomRulesError(
            f"custom_rules is {size} bytes; the limit is {MAX_CUSTOM_RULES_BYTES} bytes"
            f" ({MAX_CUSTOM_RULES_BYTES / 1_048_576:g} MiB)"
        )
    if bad := _NOT_TEXT.search(text):
        line = text.count("\n", 0, bad.start()) + 1
        raise CustomRulesError(
            f"custom_rules is not text: non-printable character U+{ord(bad.group()):04X}"
            f" at line {line}"
        )
    # PyYAML refuses tabs that Falco's YAML 1.2 parser accepts as separators (`key:<tab>value`,
    # trailing tabs). Spaces keep every line and column, and Falco's dry-run judges the real text.
    documents = _compose(text.replace("\t", " "))
    if not documents:
        return CustomRules("", RuleNames())
    index = 0
    names: list[str] = []
    tags: list[frozenset[str]] = []
    for document in documents:
        if not isinstance(document, SequenceNode):
            raise CustomRulesError(
                "custom_rules must be a YAML list of items such as '- rule: ...', got a"
                f" {_describe(document)} at line {document.start_mark.line + 1}"
            )
        entries: list[Node] = document.value
        for node in entries:
            index += 1
            # Falco skips null entries (a lone `-`), so they are allowed.
            if not _is_null(node):
                item = _item(index, node)
                _check_item(item)
                if item.kind == "rule" and item.name is not None:
                    names.append(item.name)
                    tags.append(frozenset(_tags(item)))
    return CustomRules(text, RuleNames(tuple(names), tuple(tags)))


def _tags(item: _Item) -> list[str]:
    """A rule's tags as Falco reads them: the scalar entries of its `tags` list."""
    node = item.fields.get("tags")
    values: list[Node] = node.value if isinstance(node, SequenceNode) else []
    return [tag for value in values if (tag := _text(value)) is not None]


# libyaml (0.2.5 on) refuses nesting past 1,000 levels with this problem.
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


def _compose(text: str) -> list[Node]:
    """Compose every non-null YAML document, keeping node marks for line numbers.

    Composing (not constructing) also keeps aliases shared, so an alias bomb costs no memory.
    Text libyaml refuses is composed again by the Python parser, whose messages are the ones
    operators see (libyaml's say less, e.g. no alias name).
    """
    try:
        return _compose_with(_LOADER, text)
    except yaml.MarkedYAMLError as err:
        # The Python parser takes time quadratic in the nesting to find the same: answer now.
        if err.problem == _LIBYAML_TOO_DEEP:
            raise CustomRulesError("custom_rules: YAML is nested too deeply") from None
    except (yaml.YAMLError, RecursionError):
        pass
    try:
        return _compose_with(yaml.SafeLoader, text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CustomRulesError(f"custom_rules: YAML error{where}: {err.problem}") from None
    except RecursionError:
        raise CustomRulesError("custom_rules: YAML is nested too deeply") from None


def _compose_with(
    loader_class: type[yaml.SafeLoader] | type[yaml.CSafeLoader], text: str
) -> list[Node]:
    loader = loader_class(text)
    documents: list[Node | None] = []
    while loader.check_node():
        documents.append(loader.get_node())
    return [node for node in documents if node is not None and not _is_null(node)]


def _item(index: int, node: Node) -> _Item:
    """Identify an item's kind and name and index its fields, as Falco's reader would.

    Keys are taken literally: Falco's YAML library has no `<<` merge keys, so neither do we.
    """
    line = node.start_mark.line + 1
    if not isinstance(node, MappingNode):
        raise _item_error(
            index, line, "", f"must be a mapping such as 'rule: ...', got a {_describe(node)}"
        )
    fields: dict[str, Node] = {}
    pairs: list[tuple[Node, Node]] = node.value
    for key_node, value in pairs:
        key = _text(key_node)
        if key is None:
            raise _item_error(index, line, "", "field names must be plain strings")
        if key in fields:
            # yaml-cpp reads the first one, PyYAML the last: refuse to guess.
            raise _item_error(index, line, "", f"field '{key}' is given twice")
        fields[key] = value
    kinds = [kind for kind in _KINDS if kind in fields]
    if len(kinds) != 1:
        found = ", ".join(f"'{key}'" for key in (kinds or fields)) or "no fields"
        expected = ", ".join(f"'{kind}'" for kind in _KINDS)
        raise _item_error(index, line, "", f"needs exactly one of {expected}; found {found}")
    kind = kinds[0]
    if kind not in _OVERRIDABLE:
        return _Item(index, line, kind, None, fields)
    name = _text(fields[kind])
    if name is None:
        raise _item_error(index, line, kind, "the name must be a non-empty string")
    return _Item(index, line, kind, name, fields)


def _check_item(item: _Item) -> None:
    """Apply the checks of the item's kind."""
    if item.kind == "required_engine_version":
        _required_text(item, item.kind)
    elif item.kind == "required_plugin_versions":
        if not isinstance(item.fields[item.kind], SequenceNode):
            raise item.error("'required_plugin_versions' must be a list")
    else:
        _check_named_item(item)


def _check_named_item(item: _Item) -> None:
    """Check a rule, macro or list: a definition, a legacy append, or an override."""
    legacy_append = _flag(item, "append")
    if "override" in item.fields:
        if legacy_append:
            raise item.error("'override' cannot be combined with the legacy 'append: true'")
        _check_override(item)
    if item.kind == "list":
        if not isinstance(item.fields.get("items"), SequenceNode):
            raise item.error("needs 'items' as a list")
    elif item.kind == "macro":
        _required_text(item, "condition")
    else:
        if not legacy_append and "override" not in item.fields:
            _check_rule_definition(item)
        _check_rule_values(item)


def _check_rule_definition(item: _Item) -> None:
    """A rule without override or append either defines a new rule or toggles an existing one."""
    if not any(field in item.fields for field in _NEW_RULE_FIELDS):
        if "enabled" not in item.fields:
            raise item.error(
                "needs 'condition', 'output', 'desc', 'priority' and 'source: k8s_audit' to define"
                " a rule, 'enabled' to turn an existing one on or off, or 'override' to change it"
            )
        return
    for field in _NEW_RULE_FIELDS:
        _required_text(item, field)
    if "source" not in item.fields:
        raise item.error(
            f"missing 'source: {_AUDIT_SOURCE}' (Falco defaults to the syscall source, which"
            " never fires in this audit-only deployment)"
        )


def _check_rule_values(item: _Item) -> None:
    """Check the rule fields that have a closed set of values, wherever they appear."""
    _flag(item, "enabled")
    if "priority" in item.fields:
        priority = _required_text(item, "priority")
        if priority.lower() not in _PRIORITIES:
            raise item.error(
                f"priority '{priority}' is not one of emergency, alert, critical, error, warning,"
                " notice, informational, debug"
            )
    if "source" in item.fields:
        source = _text(item.fields["source"]) or ""
        if source != _AUDIT_SOURCE:
            raise item.error(
                f"source '{source}' would never fire: this charm runs Falco audit-only, so rules"
                f" need 'source: {_AUDIT_SOURCE}'"
            )


def _check_override(item: _Item) -> None:
    """Mirror Falco's override rules: known operations on overridable fields that are present."""
    override = item.fields["override"]
    if not isinstance(override, MappingNode) or not override.value:
        raise item.error("'override' must map fields to 'append' or 'replace'")
    overridable = _OVERRIDABLE[item.kind]
    pairs: list[tuple[Node, Node]] = override.value
    overridden: set[str] = set()
    for key_node, value in pairs:
        field, operation = _text(key_node) or "", _text(value) or ""
        if operation not in overridable:
            raise item.error(f"override of '{field}' must be 'append' or 'replace'")
        if field not in overridable[operation]:
            raise item.error(f"a {item.kind}'s '{field}' cannot be overridden with '{operation}'")
        if field not in item.fields:
            raise item.error(f"overrides '{field}' ({operation}) but gives no '{field}'")
        overridden.add(field)
    # Falco refuses overridable rule fields in an override item that lack an override entry.
    stray = sorted(set(item.fields) & overridable["replace"] - overridden)
    if stray:
        raise item.error(f"'{stray[0]}' is given but has no entry under 'override'")


def _required_text(item: _Item, field: str) -> str:
    """Return a field Falco decodes as a non-empty scalar, or raise naming the field."""
    if field not in item.fields:
        raise item.error(f"missing '{field}'")
    value = _text(item.fields[field])
    if value is None:
        raise item.error(f"'{field}' must be a non-empty string")
    return value


def _flag(item: _Item, field: str) -> bool:
    """Return an optional boolean field (False when absent), decoded as yaml-cpp does."""
    if field not in item.fields:
        return False
    text = _text(item.fields[field]) or ""
    value = _BOOLEANS.get(text.lower())
    if value is None or text not in (text.lower(), text.upper(), text.capitalize()):
        raise item.error(f"'{field}' must be true or false")
    return value


def _text(node: Node) -> str | None:
    """Return a non-null, non-empty scalar's text (Falco's idea of a usable value), else None."""
    if isinstance(node, ScalarNode) and not _is_null(node) and node.value:
        return node.value
    return None


def _is_null(node: Node) -> bool:
    """Tell whether a node is YAML null (empty, `~` or `null`)."""
    return node.tag == _NULL_TAG


def _describe(node: Node) -> str:
    """Name a node's shape in the operator's terms."""
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "plain value"


def _item_error(index: int, line: int, label: str, problem: str) -> CustomRulesError:
    """Format the error for item `index`, e.g. `custom_rules item 2 (rule 'X', line 7): ...`."""
    where = f"{label}, line {line}" if label else f"line {line}"
    return CustomRulesError(f"custom_rules item {index} ({where}): {problem}")


@dataclass(frozen=True)
class DisabledRules:
    """Stock rules to switch off, by exact name (wildcards allowed by Falco) or by tag."""

    names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def falco_selection(self) -> list[dict[str, dict[str, str]]]:
        """Return the value for falco.yaml's `rules:` key, which Falco applies after loading."""
        return [{"disable": {"rule": name}} for name in self.names] + [
            {"disable": {"tag": tag}} for tag in self.tags
        ]

    def unmatched(self, *rules: RuleNames) -> list[str]:
        """Entries that select no rule in the given rules files (a typo, most likely).

        Falco accepts such entries silently, so this is the only place an operator learns that
        a rule they meant to silence is still on. Names may use Falco's ``*`` wildcard.
        """
        if not (self.names or self.tags):
            return []
        names = [name for each in rules for name in each.names]
        exact = set(names)
        tags = set[str]().union(*(each.tags for each in rules))
        missing = [
            n
            for n in self.names
            if n not in exact and ("*" not in n or not any(matches_wildcard(n, r) for r in names))
        ]
        return missing + [f"tag:{tag}" for tag in self.tags if tag not in tags]

    def disables_every_rule(self, *rules: RuleNames) -> bool:
        """Whether no rule of the given rules files is left on: Falco then detects nothing."""
        if not (self.names or self.tags):
            return False
        exact = set(self.names)
        patterns = [name for name in self.names if "*" in name]
        tags = set(self.tags)
        return all(
            name in exact
            or not tags.isdisjoint(tagged)
            or any(matches_wildcard(p, name) for p in patterns)
            for each in rules
            for name, tagged in zip(each.names, each.rule_tags, strict=True)
        )


def rule_names(text: str | bytes) -> RuleNames:
    """The rules a trusted rules file (the stock one) defines; none if it does not parse."""
    try:
        items = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python
    except yaml.YAMLError:
        return RuleNames()  # already reported by the checks that gate these files
    names: list[str] = []
    tags: list[frozenset[str]] = []
    for item in cast("list[Any]", items) if isinstance(items, list) else []:
        rule = cast("dict[str, Any]", item) if isinstance(item, dict) else {}
        if isinstance(rule.get("rule"), str):
            names.append(rule["rule"])
            tags.append(frozenset(str(tag) for tag in cast("list[Any]", rule.get("tags") or [])))
    return RuleNames(tuple(names), tuple(tags))


def parse_disabled_rules(value: str) -> DisabledRules:
    """Parse a comma list of rule names or `tag:<tag>` entries.

    Whitespace is trimmed, empty entries are ignored and duplicates dropped, keeping first-seen
    order so falco.yaml stays stable. A rule name cannot contain a comma; no stock rule does.
    """
    names: dict[str, None] = {}
    tags: dict[str, None] = {}
    for entry in (part.strip() for part in value.split(",")):
        if entry.startswith("tag:"):
            tag = entry.removeprefix("tag:").strip()
            if tag:
                tags[tag] = None
        elif entry:
            names[entry] = None
    return DisabledRules(tuple(names), tuple(tags))
