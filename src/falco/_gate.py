"""The gate every Falco config or rules change passes before it reaches the live files.

Falco's own rule applied to the charm: stage the candidate, let Falco dry-run it, and only then
swap it in. A rejected candidate never touches the live files, so the running Falco (which
hot-reloads on file changes) keeps its last good state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

from constants import (
    CHARM_RULES,
    FALCO_BIN,
    FALCO_CONFIG,
    FALCO_CONFIG_DIR,
    FALCO_CUSTOM_RULES,
    FALCO_STAGING_DIR,
    K8S_AUDIT_RULES,
    LEGACY_WEBHOOK_PEM,
)
from falco._cli_answers import first_error_line
from falco._falco_yaml import FalcoSettings, render_falco_yaml
from payload import Payload
from workload import CommandResult, Workload

logger = logging.getLogger(__name__)

DRY_RUN_TIMEOUT = 60.0


class GateRejectedError(Exception):
    """Falco refused the candidate; ``str()`` is one line for the status, ``output`` the rest."""

    def __init__(self, summary: str, output: str):
        super().__init__(summary)
        self.output = output

    @property
    def about_custom_rules(self) -> bool:
        """Whether Falco's complaint names the custom rules file (else: plugins, stock rules)."""
        return PurePosixPath(FALCO_CUSTOM_RULES).name in self.output


@dataclass(frozen=True)
class FalcoFiles:
    """The files Falco reads, keyed by their live path.

    Rules load in this order: the stock rules, the charm's own, then ``custom_rules``, which can
    therefore override or disable either.
    """

    settings: FalcoSettings
    stock_rules: bytes
    charm_rules: bytes
    custom_rules: str

    def to_json(self) -> str:
        """What to remember of an accepted candidate; the shipped rules come with the charm."""
        return json.dumps(
            {
                "settings": dataclasses.asdict(self.settings),
                "custom_rules": self.custom_rules,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, payload: Payload) -> FalcoFiles:
        """Rebuild a remembered candidate on the charm's shipped rules.

        Raises ValueError when the text is not one (e.g. written by an older charm revision).
        """
        try:
            data = json.loads(text)
            settings = FalcoSettings(**data["settings"])
            custom = str(data["custom_rules"])
            return cls(settings, *payload.shipped_rules, custom)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise ValueError(f"unreadable remembered config: {exc!r}") from None

    def at(self, root: str) -> dict[str, str | bytes | None]:
        """The file set laid out under ``root``; None means the file must not exist."""
        stock = K8S_AUDIT_RULES.replace(FALCO_CONFIG_DIR, root, 1)
        charm = CHARM_RULES.replace(FALCO_CONFIG_DIR, root, 1)
        custom = FALCO_CUSTOM_RULES.replace(FALCO_CONFIG_DIR, root, 1)
        rules_dir = custom.rsplit("/", 1)[0]
        return {
            # Rules first, falco.yaml last: Falco's file watcher reloads on falco.yaml.
            stock: self.stock_rules,
            charm: self.charm_rules,
            custom: self.custom_rules or None,
            # An upgraded unit's k8saudit key, from before TLS moved to the audit intake.
            LEGACY_WEBHOOK_PEM.replace(FALCO_CONFIG_DIR, root, 1): None,
            FALCO_CONFIG.replace(FALCO_CONFIG_DIR, root, 1): render_falco_yaml(
                self.settings, (stock, charm, rules_dir)
            ),
        }


def dry_run_command(config_path: str) -> list[str]:
    """Falco's own validation of a config and everything it loads, without opening ports."""
    return [FALCO_BIN, "-c", config_path, "--disable-source", "syscall", "--dry-run"]


def is_live(workload: Workload, files: FalcoFiles) -> bool:
    """Whether the live files already hold exactly this candidate."""
    for path, content in files.at(FALCO_CONFIG_DIR).items():
        current = workload.read(path)
        wanted = content.encode() if isinstance(content, str) else content
        if current != wanted:
            return False
    return True


def validate(workload: Workload, files: FalcoFiles) -> CommandResult:
    """Stage the candidate and dry-run it; raise GateRejectedError when Falco refuses it.

    Raises WorkloadError when the container cannot run the check (gone, timed out).
    """
    _write(workload, files.at(FALCO_STAGING_DIR))
    result = workload.run(
        dry_run_command(FALCO_CONFIG.replace(FALCO_CONFIG_DIR, FALCO_STAGING_DIR, 1)),
        timeout=DRY_RUN_TIMEOUT,
    )
    if result.exit_code != 0:
        logger.warning("falco dry-run rejected the candidate:\n%s", result.output)
        raise GateRejectedError(first_error_line(result.output), result.output)
    return result


def apply(workload: Workload, files: FalcoFiles) -> bool:
    """Validate and swap in the candidate; return whether the live files changed."""
    if is_live(workload, files):
        return False
    validate(workload, files)
    _write(workload, files.at(FALCO_CONFIG_DIR))
    return True


def _write(workload: Workload, layout: dict[str, str | bytes | None]) -> None:
    for path, content in layout.items():
        if content is None:
            # Falco loads the rules directory itself, so it must exist even when empty.
            workload.ensure_dir(path.rsplit("/", 1)[0])
            workload.remove_if_present(path)
        else:
            workload.push_if_changed(path, content)
