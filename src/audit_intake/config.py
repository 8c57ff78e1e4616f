"""The intake's JSON configuration: the contract between the charm and the intake.

The charm builds an `IntakeConfig`, writes `config_to_dict(...)` as JSON (mode 0600), and the
intake reads it back with `load_config`. Every key is required and unknown keys are refused, so
a typo in the charm fails loudly. The tokens are stored as their sha256 only: the container
never holds the credential itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_PATH: Final = re.compile(r"/[A-Za-z0-9._~/-]*")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


def token_sha256(token: str) -> str:
    """How a bearer token is kept and compared: the hex sha256 of its bytes."""
    return hashlib.sha256(token.encode("latin-1")).hexdigest()


@dataclass(frozen=True)
class AcceptedToken:
    """A bearer token the intake lets in, by its sha256, until ``expires`` (unix time) if set."""

    sha256: str
    expires: float | None = None


@dataclass(frozen=True)
class IntakeConfig:
    """Where the intake listens, whom it lets in, where it keeps batches, where Falco listens.

    ``tls_pem`` holds the certificate, its chain and the private key (PEM); None serves plain
    HTTP. A SIGHUP applies the tokens and the certificate in place; the rest needs a restart
    (`static_part`).
    """

    webhook_host: str
    webhook_port: int
    webhook_path: str
    tls_pem: Path | None
    tokens: tuple[AcceptedToken, ...]
    k8saudit_url: str
    spool_dir: Path
    spool_max_bytes: int
    max_batch_bytes: int
    settle_seconds: float
    metrics_host: str
    metrics_port: int

    def __post_init__(self) -> None:
        for name in ("webhook_port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name}: not a TCP port")
        if not _PATH.fullmatch(self.webhook_path):
            raise ConfigError("webhook_path: must be an absolute URL path")
        _check_tokens(self.tokens)
        url = urlsplit(self.k8saudit_url)
        if url.scheme != "http" or not url.hostname or url.port is None:
            raise ConfigError("k8saudit_url: must be http://HOST:PORT/PATH (k8saudit on loopback)")
        for name in ("spool_max_bytes", "max_batch_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        if self.max_batch_bytes > self.spool_max_bytes:
            raise ConfigError("max_batch_bytes: must not exceed spool_max_bytes")
        if self.settle_seconds < 0:
            raise ConfigError("settle_seconds: must not be negative")

    def static_part(self) -> IntakeConfig:
        """This config with the reloadable keys blanked: equal parts need no restart."""
        return replace(self, tls_pem=None, tokens=(AcceptedToken("0" * 64),))


def _check_tokens(tokens: tuple[AcceptedToken, ...]) -> None:
    if not tokens:
        raise ConfigError("tokens: at least one token is needed (none would refuse all)")
    if not all(_SHA256_HEX.fullmatch(token.sha256) for token in tokens):
        raise ConfigError("tokens: sha256 must be 64 lowercase hex digits")


_TYPES: Final[Mapping[str, type | tuple[type, ...]]] = {
    "webhook_host": str,
    "webhook_port": int,
    "webhook_path": str,
    "tls_pem": (str, type(None)),
    "tokens": list,
    "k8saudit_url": str,
    "spool_dir": str,
    "spool_max_bytes": int,
    "max_batch_bytes": int,
    "settle_seconds": (int, float),
    "metrics_host": str,
    "metrics_port": int,
}


def config_from_dict(data: Mapping[str, Any]) -> IntakeConfig:
    """Check ``data`` (parsed JSON) and build the config; ConfigError names the bad key."""
    names = {field.name for field in fields(IntakeConfig)}
    if unknown := sorted(set(data) - names):
        raise ConfigError(f"unknown keys: {', '.join(unknown)}")
    if missing := sorted(names - set(data)):
        raise ConfigError(f"missing keys: {', '.join(missing)}")
    for name, kind in _TYPES.items():
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"{name}: wrong type {type(value).__name__}")
    values = dict(data)
    values["tokens"] = tuple(_token(entry) for entry in data["tokens"])
    values["tls_pem"] = Path(data["tls_pem"]) if data["tls_pem"] is not None else None
    values["spool_dir"] = Path(data["spool_dir"])
    values["settle_seconds"] = float(data["settle_seconds"])
    return IntakeConfig(**values)


def _token(entry: object) -> AcceptedToken:
    if not isinstance(entry, dict) or set(entry) != {"sha256", "expires"}:  # pyright: ignore[reportUnknownArgumentType]
        raise ConfigError("tokens: each entry must be {sha256, expires}")
    sha256, expires = entry["sha256"], entry["expires"]  # pyright: ignore[reportUnknownVariableType]
    if not isinstance(sha256, str):
        raise ConfigError("tokens: sha256 must be a string")
    if isinstance(expires, bool) or not isinstance(expires, int | float | None):
        raise ConfigError("tokens: expires must be a number or null")
    return AcceptedToken(sha256, None if expires is None else float(expires))


def config_to_dict(config: IntakeConfig) -> dict[str, Any]:
    """The JSON-ready form `config_from_dict` reads back."""
    data: dict[str, Any] = {field.name: getattr(config, field.name) for field in fields(config)}
    data["tokens"] = [{"sha256": t.sha256, "expires": t.expires} for t in config.tokens]
    data["tls_pem"] = str(config.tls_pem) if config.tls_pem is not None else None
    data["spool_dir"] = str(config.spool_dir)
    return data


def load_config(path: Path) -> IntakeConfig:
    """Read and check the JSON file at ``path``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a JSON object")
    return config_from_dict(data)  # pyright: ignore[reportUnknownArgumentType]
