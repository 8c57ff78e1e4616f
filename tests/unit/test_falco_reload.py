"""Reading which files Falco loaded from its /metrics, and what it should report."""

from __future__ import annotations

import hashlib
import socket
from typing import Any, cast

import pytest

from constants import FALCO_CONFIG, LEGACY_WEBHOOK_PEM
from falco import _reload as falco_reload
from falco._reload import LoadedFiles, expected_files, parse_loaded_files

# Falco 0.44.1's exposition as falco_metrics.cpp writes it (sha256 values shortened).
EXPOSITION = """\
# HELP falcosecurity_falco_version_info https://falco.org/docs/metrics/
# TYPE falcosecurity_falco_version_info gauge
falcosecurity_falco_version_info{version="0.44.1"} 1
# HELP falcosecurity_falco_sha256_rules_files_info https://falco.org/docs/metrics/
# TYPE falcosecurity_falco_sha256_rules_files_info gauge
falcosecurity_falco_sha256_rules_files_info{file_name="k8s_audit_rules.yaml",sha256="fa53"} 1
# HELP falcosecurity_falco_sha256_rules_files_info https://falco.org/docs/metrics/
# TYPE falcosecurity_falco_sha256_rules_files_info gauge
falcosecurity_falco_sha256_rules_files_info{file_name="custom_rules.yaml",sha256="c0ff"} 1
# HELP falcosecurity_falco_sha256_config_files_info https://falco.org/docs/metrics/
# TYPE falcosecurity_falco_sha256_config_files_info gauge
falcosecurity_falco_sha256_config_files_info{file_name="falco.yaml",sha256="f97d"} 1
# HELP falcosecurity_falco_outputs_queue_num_drops_total https://falco.org/docs/metrics/
# TYPE falcosecurity_falco_outputs_queue_num_drops_total counter
falcosecurity_falco_outputs_queue_num_drops_total 0
"""


def test_reads_the_sha256_of_every_loaded_config_and_rules_file():
    assert parse_loaded_files(EXPOSITION) == LoadedFiles(
        config={"falco.yaml": "f97d"},
        rules={"k8s_audit_rules.yaml": "fa53", "custom_rules.yaml": "c0ff"},
    )


def test_a_page_without_the_info_samples_reports_nothing_loaded():
    assert parse_loaded_files("falcosecurity_falco_version_info 1\n") == LoadedFiles()


def test_labels_are_read_in_any_order_and_with_escaped_quotes():
    text = 'falcosecurity_falco_sha256_rules_files_info{sha256="ab",file_name="a\\"b.yaml"} 1\n'
    assert parse_loaded_files(text).rules == {'a\\"b.yaml': "ab"}


def test_expected_files_are_the_written_bytes_by_base_name_and_skip_absent_files():
    layout: dict[str, str | bytes | None] = {
        "/etc/falco/k8s_audit_rules.yaml": b"- rule: x\n",
        "/etc/falco/rules.d/custom_rules.yaml": None,
        "/etc/falco/falco.yaml": "priority: debug\n",
    }

    assert expected_files(layout) == LoadedFiles(
        config={"falco.yaml": hashlib.sha256(b"priority: debug\n").hexdigest()},
        rules={"k8s_audit_rules.yaml": hashlib.sha256(b"- rule: x\n").hexdigest()},
    )


def test_a_file_that_must_not_exist_is_not_expected_in_falcos_report():
    """The layout names files Falco must not have (None): Falco cannot report them."""
    layout: dict[str, str | bytes | None] = {
        "/etc/falco/k8s_audit_rules.yaml": b"- rule: x\n",
        LEGACY_WEBHOOK_PEM: None,
        "/etc/falco/falco.yaml": "priority: debug\n",
    }

    expected = expected_files(layout)

    assert set(expected.rules) == {"k8s_audit_rules.yaml"}
    assert set(expected.config) == {"falco.yaml"}


class _NoRestart:
    """A Falco workload that must not be restarted."""

    def restart(self) -> None:
        raise AssertionError("restarted Falco on a hook that changed nothing")


def test_a_hook_that_wrote_nothing_does_not_wait_on_a_falco_that_is_not_answering(
    monkeypatch: pytest.MonkeyPatch,
):
    with socket.socket() as probe:  # a port nothing listens on: Falco (re)starting
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setattr(falco_reload, "METRICS_PORT", probe.getsockname()[1])
    monkeypatch.setattr(falco_reload, "CONFIRM_WAIT_SECONDS", 30.0)

    check = falco_reload.confirm_reload(
        cast(Any, _NoRestart()), {FALCO_CONFIG: "a: 1\n"}, changed=False
    )

    assert check.confirmed
    assert not check.restarted


def test_silence_after_a_change_falco_never_confirmed_is_no_confirmation(
    monkeypatch: pytest.MonkeyPatch,
):
    with socket.socket() as probe:  # a port nothing listens on: Falco silent
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setattr(falco_reload, "METRICS_PORT", probe.getsockname()[1])
    monkeypatch.setattr(falco_reload, "CONFIRM_WAIT_SECONDS", 30.0)

    check = falco_reload.confirm_reload(
        cast(Any, _NoRestart()), {FALCO_CONFIG: "a: 1\n"}, changed=False, unconfirmed=True
    )

    assert not check.confirmed
    assert not check.restarted
    assert check.problem == falco_reload.SILENT
