"""Confirm, from Falco's own view, that it runs the files the charm wrote; restart it if not.

Falco hot-reloads when a watched file changes, but it can miss a change: one written while its
restarted app has read its config but not yet re-added its watches, and a change to a file
whose inode a failed reload replaced (Pebble's push renames a new file over the old: the watch
went with the old inode; a file written in place keeps it). Its webserver's ``/metrics``
(``falco_metrics.cpp`` @ 0.44.1) lists the sha256 of each config and rules file it loaded, as
``falcosecurity_falco_sha256_config_files_info{file_name="falco.yaml",sha256="…"} 1`` and
``falcosecurity_falco_sha256_rules_files_info{…}``, with the file's base name. They are compared
with the bytes the charm wrote; after a bounded wait, Pebble restarts Falco, which then reads
the files from scratch.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from constants import FALCO_CONFIG, WEBSERVER_PORT
from pod_metrics import read_metrics
from workload import Workload

logger = logging.getLogger(__name__)

# Where the charm reads Falco's metrics: the pod shares one network, so the falco container's
# webserver is on the charm's loopback. Tests point it at a stand-in.
METRICS_PORT = WEBSERVER_PORT
# A hot reload waits ~100 ms for quiet, dry-runs, then restarts its app (plugins, rule compile):
# a few seconds with the largest rule sets. A confirmed reload ends the wait at once.
CONFIRM_WAIT_SECONDS = 20.0
POLL_SECONDS = 0.2

_SAMPLE = re.compile(
    r"^falcosecurity_falco_sha256_(?P<kind>config|rules)_files_info\{(?P<labels>[^}]*)\}",
    re.MULTILINE,
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class LoadedFiles:
    """Base name -> sha256 of the config files and of the rules files Falco loaded."""

    config: Mapping[str, str] = field(default_factory=dict[str, str])
    rules: Mapping[str, str] = field(default_factory=dict[str, str])


def expected_files(layout: Mapping[str, str | bytes | None]) -> LoadedFiles:
    """What Falco reports once it runs ``layout`` (live path -> content; None: no such file)."""
    config: dict[str, str] = {}
    rules: dict[str, str] = {}
    for path, content in layout.items():
        if content is None:
            continue
        data = content.encode() if isinstance(content, str) else content
        kind = config if path == FALCO_CONFIG else rules
        kind[PurePosixPath(path).name] = hashlib.sha256(data).hexdigest()
    return LoadedFiles(config, rules)


def parse_loaded_files(text: str) -> LoadedFiles:
    """Read the sha256 info samples from Falco's Prometheus text exposition."""
    found: dict[str, dict[str, str]] = {"config": {}, "rules": {}}
    for sample in _SAMPLE.finditer(text):
        labels = dict(_LABEL.findall(sample["labels"]))
        if "file_name" in labels and "sha256" in labels:
            found[sample["kind"]][labels["file_name"]] = labels["sha256"]
    return LoadedFiles(found["config"], found["rules"])


def wait_until_loaded(expected: LoadedFiles, wait_seconds: float) -> bool:
    """Poll Falco's metrics until they show ``expected`` (True) or the wait ends (False)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        text = read_metrics(METRICS_PORT)
        if text is not None and parse_loaded_files(text) == expected:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


# Why a change stays unconfirmed in later hooks, until Falco reports the files written.
SILENT = "Falco reload unconfirmed: Falco's /metrics has not answered since the last change"
NOT_ASKED = "Falco reload unconfirmed: Falco has not reported the last change's files yet"


@dataclass(frozen=True)
class ReloadCheck:
    """How confirming Falco's reload went, in the words the unit status needs."""

    confirmed: bool
    restarted: bool = False
    silent: bool = False
    """Falco's /metrics did not answer, after a change it never confirmed."""

    @property
    def note(self) -> str:
        """Worth saying in an Active status: Falco runs the config, but needed a restart."""
        return "Falco restarted (missed hot reload)" if self.restarted else ""

    @property
    def problem(self) -> str:
        """Why the config cannot be called applied; empty when it is."""
        if self.confirmed:
            return ""
        if self.silent:
            return SILENT
        return "Falco reload unconfirmed: Falco restarted, not yet running the new config"


def confirm_reload(
    workload: Workload,
    layout: Mapping[str, str | bytes | None],
    *,
    changed: bool,
    unconfirmed: bool = False,
) -> ReloadCheck:
    """Wait (bounded) for Falco to report ``layout``; restart it through Pebble if it does not.

    A hook that wrote nothing (``changed`` False) only looks once, to catch a reload lost
    earlier, and no hook waits on a webserver that does not answer. Such silence passes only
    when Falco confirmed the last change (it is restarting, and reads those files anyway):
    after a change it never confirmed (``unconfirmed``), only its report of the files does.
    """
    expected = expected_files(layout)
    if not changed:
        text = read_metrics(METRICS_PORT)
        if text is not None and parse_loaded_files(text) == expected:
            return ReloadCheck(confirmed=True)
        if text is None:
            return ReloadCheck(confirmed=not unconfirmed, silent=unconfirmed)
    if wait_until_loaded(expected, CONFIRM_WAIT_SECONDS):
        return ReloadCheck(confirmed=True)
    logger.warning(
        "Falco did not report the files written within %gs (a missed hot reload): restarting it",
        CONFIRM_WAIT_SECONDS,
    )
    workload.restart()
    confirmed = wait_until_loaded(expected, CONFIRM_WAIT_SECONDS)
    if not confirmed:
        logger.warning("Falco restarted but does not report the files written yet")
    return ReloadCheck(confirmed=confirmed, restarted=True)
