"""The built plugins against what Falco 0.44.1, the stock rules and the charm's falco.yaml need."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema.validators
import pytest
from falco_plugin_api import (
    FRAMEWORK_API_VERSION,
    PLUGIN_EVENT_TYPE,
    PluginError,
    api_version_compatible,
)
from k8saudit_listener import audit_event, event_list, falco_init_config, open_k8saudit
from rule_fields import fields_used_by, owner


def test_falco_0_44_offers_the_plugin_api_each_plugin_requires(k8saudit, json_plugin):
    for plugin in (k8saudit, json_plugin):
        assert api_version_compatible(plugin.required_api_version, FRAMEWORK_API_VERSION), (
            plugin.name,
            plugin.required_api_version,
        )


def test_api_version_check_is_falcos():
    assert api_version_compatible("3.12.0", (3, 12, 0))
    assert api_version_compatible("3.0.7", (3, 12, 0))
    assert not api_version_compatible("3.12.1", (3, 12, 0))
    assert not api_version_compatible("3.13.0", (3, 12, 0))
    assert not api_version_compatible("2.0.0", (3, 12, 0))


def test_plugins_are_the_pinned_versions(k8saudit, json_plugin):
    assert (k8saudit.name, k8saudit.version) == ("k8saudit", "0.18.0")
    assert (json_plugin.name, json_plugin.version) == ("json", "0.7.4")
    assert k8saudit.event_source == "k8s_audit"


def test_stock_rules_required_plugin_versions_are_met(k8saudit, json_plugin, stock_rules):
    loaded = {plugin.name: plugin.version for plugin in (k8saudit, json_plugin)}
    requirements = [
        requirement
        for item in stock_rules
        for requirement in item.get("required_plugin_versions", [])
    ]

    assert {requirement["name"] for requirement in requirements} == {"k8saudit", "json"}
    for requirement in requirements:
        # Falco: same major, and at least the required minor.patch.
        have = [int(part) for part in loaded[requirement["name"]].split(".")]
        need = [int(part) for part in requirement["version"].split(".")]
        assert have[0] == need[0], (requirement, loaded)
        assert have >= need, (requirement, loaded)


def test_every_field_the_stock_rules_use_exists(k8saudit, json_plugin, stock_rules):
    used = fields_used_by(stock_rules)

    assert {"ka.req.pod.containers.privileged", "ka.target.subresource", "jevt.value"} <= set(used)
    for name, args in sorted(used.items()):
        field = owner(name, k8saudit, json_plugin).field(name)
        assert field is not None, f"{name} is not a field of the built plugins"
        takes_arg = "arg" in field
        assert takes_arg or args == {""}, f"{name} takes no argument but the rules pass {args}"
        if field.get("arg", {}).get("isRequired"):
            assert "" not in args, f"{name} needs an argument"


def test_rendered_init_config_matches_each_plugins_schema(k8saudit, json_plugin, rendered_plugins):
    for plugin in (k8saudit, json_plugin):
        entry = rendered_plugins[plugin.name]
        assert entry["library_path"] == f"lib{plugin.name}.so"
        schema = plugin.init_schema()
        if "init_config" in entry:
            validator = jsonschema.validators.validator_for(schema)(schema)
            assert list(validator.iter_errors(entry["init_config"])) == []


def test_rendered_init_config_names_only_keys_the_plugins_declare(
    k8saudit, json_plugin, rendered_plugins
):
    # Both schemas allow additional properties: a misspelt key would pass Falco's check and be
    # ignored, leaving e.g. the async extractor on. Each key must be a declared property.
    for plugin in (k8saudit, json_plugin):
        properties = plugin.init_schema()["definitions"]["PluginConfig"]["properties"]
        init_config = rendered_plugins[plugin.name]["init_config"]
        assert init_config["useAsync"] is False, plugin.name
        assert properties["useAsync"]["type"] == "boolean", plugin.name
        assert set(init_config) <= set(properties), (plugin.name, set(properties))


def test_plugins_init_with_the_rendered_init_config(k8saudit, json_plugin, rendered_plugins):
    for plugin in (k8saudit, json_plugin):
        config = falco_init_config(rendered_plugins[plugin.name].get("init_config"))
        with plugin.initialized(config) as state:  # raises PluginError on a refusal
            assert state.plugin is plugin


def test_init_refuses_a_mistyped_init_config(k8saudit, rendered_plugins):
    config = dict(rendered_plugins["k8saudit"]["init_config"])
    config["maxEventSize"] = str(config["maxEventSize"])

    with (
        pytest.raises(PluginError, match="maxEventSize"),
        k8saudit.initialized(falco_init_config(config)),
    ):
        pass


def listening_on(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port``, as the kernel lists them."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.usefixtures("rendered_port_lock")
def test_k8saudit_opens_the_rendered_open_params_on_loopback_only_and_serves_the_webhook_path(
    k8saudit, rendered_plugins, webhook_path
):
    """Only the intake, in the same pod, can reach k8saudit: nothing else gets past it."""
    entry = rendered_plugins["k8saudit"]
    event = audit_event(level="Metadata", verb="get", resource="pods", namespace="a", name="b")
    port = urlsplit(entry["open_params"]).port
    assert port is not None

    with open_k8saudit(k8saudit, entry["init_config"], entry["open_params"]) as listener:
        reply = listener.post(webhook_path, event_list(event))
        events = listener.read_events(1)
        addresses = listening_on(port)

    assert entry["open_params"].startswith("http://127.0.0.1:")
    assert addresses == {"0100007F"}  # 127.0.0.1, little-endian hex; no 0.0.0.0, no [::]
    assert reply.status == 200
    # Plugin ID 0 means "the plugin's own", which Falco fills in.
    assert [(e.type, e.plugin_id) for e in events] == [(PLUGIN_EVENT_TYPE, 0)]
    assert json.loads(events[0].data)["auditID"] == event["auditID"]
