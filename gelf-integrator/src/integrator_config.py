"""The integrator's options, typed and checked once per hook; no ops here.

As in falco-k8s's own config model: a pydantic model of the options, `load_config` that
leaves invalid ones at their defaults and names them, and option groups so that a bad
option holds back only the part it feeds (a bad ``api_*`` option stops provisioning, not
the published endpoint). The endpoint rules (URL, header name, PEM, size) are the gelf
library's own, so the integrator never publishes what a sender would refuse. Problems
name the option, never a value: two options point at secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, field_validator

from charms.falco_k8s.v0.gelf import AUTH_CONTENT_KEY, DEFAULT_MAX_MESSAGE_BYTES, GelfEndpointData

TOKEN_CONTENT_KEY: Final = "token"  # noqa: S105 (a key name)
"""Key of the API-token secret's content that holds the Graylog API token."""

# Graylog reads max_chunk_size as a Java int.
MAX_MESSAGE_BYTES_LIMIT: Final = 2**31 - 1
# What an HTTP header value can carry (RFC 9110 field-value: visible ASCII, space, tab).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]+")

ENDPOINT_OPTIONS: Final = frozenset(
    {"gelf_url", "auth_header", "auth_secret", "ca_cert", "max_message_bytes"}
)
"""What the published endpoint is made of: one bad, nothing new is published."""
PROVISIONING_OPTIONS: Final = frozenset({"api_url", "api_token_secret"})
"""What provisioning needs besides the endpoint: one bad, only provisioning waits."""


class ConfigError(ValueError):
    """An option or a secret it points at is invalid; the message names it, for the status."""


class IntegratorConfig(BaseModel):
    """The charm's options, typed; field names are the option names operators type.

    ``auth_secret`` and ``api_token_secret`` are ``type: secret`` options: their values are
    secret URIs, read by the charm.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    gelf_url: str = ""
    auth_header: str = ""
    auth_secret: str = ""
    ca_cert: str = ""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    api_url: str = ""
    api_token_secret: str = ""

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("gelf_url")
    @classmethod
    def _gelf_url(cls, value: str) -> str:
        if not value:
            raise ValueError("required, e.g. http://graylog.example.com:12201/gelf")
        _library_rule("url", value)
        if urlsplit(value).port == 0:
            raise ValueError("the port must be 1-65535")
        return value

    @field_validator("auth_header")
    @classmethod
    def _auth_header(cls, value: str) -> str:
        if value:
            _library_rule("auth_header_name", value)
        return value

    @field_validator("ca_cert")
    @classmethod
    def _ca_cert(cls, value: str) -> str:
        if value:
            _library_rule("ca_cert", value)
            _check_loadable(value)
        return value

    @field_validator("max_message_bytes", mode="before")
    @classmethod
    def _max_message_bytes(cls, value: Any) -> Any:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 < value <= MAX_MESSAGE_BYTES_LIMIT
        ):
            raise ValueError(f"must be a whole number from 1 to {MAX_MESSAGE_BYTES_LIMIT}")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if value:
            _check_api_url(value)
        return value


@dataclass(frozen=True)
class LoadedConfig:
    """The options with any invalid ones at their defaults, which those are, and why."""

    values: IntegratorConfig
    invalid: frozenset[str] = frozenset()
    reason: str = ""
    """The Blocked status text naming each invalid option; empty when all are valid."""

    def usable_for(self, options: frozenset[str]) -> bool:
        """Whether every option in ``options`` is valid, so the part they feed can go on."""
        return not self.invalid & options

    @property
    def provisions(self) -> bool:
        """Whether the options ask for provisioning (and it can go ahead)."""
        return bool(self.values.api_url) and self.usable_for(PROVISIONING_OPTIONS)


def load_config(options: Mapping[str, object]) -> LoadedConfig:
    """The options, typed; invalid ones are left at their defaults and named."""
    raw = {key.replace("-", "_"): value for key, value in options.items()}
    problems: dict[str, str] = {}  # option -> the status text that names it
    try:
        values = IntegratorConfig.model_validate(raw)
    except pydantic.ValidationError as e:
        for item in e.errors(include_url=False, include_input=False):
            option = str(item["loc"][0]) if item["loc"] else "config"
            problems.setdefault(option, f"{option}: {item['msg'].removeprefix('Value error, ')}")
        values = IntegratorConfig.model_validate(
            {key: value for key, value in raw.items() if key not in problems}
        )
    for names, problem in _pair_problems(values):
        if not problems.keys() & set(names):
            problems.update(dict.fromkeys(names, problem))
    reason = "; ".join(dict.fromkeys(problems.values()))
    return LoadedConfig(values, frozenset(problems), reason)


def _pair_problems(values: IntegratorConfig) -> list[tuple[tuple[str, ...], str]]:
    """Options that only make sense together: the ones at fault, and the status text."""
    problems: list[tuple[tuple[str, ...], str]] = []
    if bool(values.auth_header) != bool(values.auth_secret):
        problems.append(
            (("auth_header", "auth_secret"), "auth_header and auth_secret: set both or neither")
        )
    if bool(values.api_url) != bool(values.api_token_secret):
        problems.append(
            (
                ("api_url", "api_token_secret"),
                "api_url and api_token_secret: set both (to provision) or neither",
            )
        )
    elif values.api_url and values.gelf_url and urlsplit(values.gelf_url).port is None:
        problems.append(
            (("api_url",), "gelf_url: write the input's port (e.g. :12201); api_url provisions it")
        )
    return problems


_FIELD_ERROR_PLACEHOLDERS: Final = {"url": "http://graylog/gelf"}


def _library_rule(field: str, value: str) -> None:
    """Apply the gelf library's rule for one of its endpoint fields to an option's value."""
    data = {**_FIELD_ERROR_PLACEHOLDERS, field: value}
    if field == "auth_header_name":
        data["auth_secret_id"] = "secret:placeholder"  # noqa: S105 (not a secret)
    try:
        GelfEndpointData.model_validate(data)
    except pydantic.ValidationError as e:
        detail = e.errors(include_url=False, include_input=False)[0]
        ctx = detail.get("ctx") or {}
        raise ValueError(
            str(ctx["error"]) if detail["type"] == "value_error" else detail["msg"]
        ) from None


def _check_loadable(pem: str) -> None:
    """What looks like PEM may still not be a certificate: OpenSSL must load it."""
    import ssl  # noqa: PLC0415 (only with a CA configured)

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as e:
        reason = getattr(e, "reason", None) or "not a certificate"
        raise ValueError(f"OpenSSL cannot load it as a CA certificate ({reason})") from None


def _check_api_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ValueError("must be an http(s) URL with a valid host and port") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not url.isascii()
        or not url.isprintable()
        or " " in url
    ):
        raise ValueError("must be an http(s) URL, e.g. https://graylog:9000/api")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValueError("no credentials, query or fragment; the token goes in a secret")
    if parts.port == 0:
        raise ValueError("the port must be 1-65535")


def auth_header_value(content: Mapping[str, str]) -> str:
    """The auth header's value from the auth secret's content."""
    value = content.get(AUTH_CONTENT_KEY, "")
    if not value:
        raise ConfigError(f"auth_secret: the secret has no {AUTH_CONTENT_KEY!r} key")
    if not _HEADER_VALUE.fullmatch(value):
        raise ConfigError(f"auth_secret: {AUTH_CONTENT_KEY!r} is not a valid HTTP header value")
    return value


def api_token(content: Mapping[str, str]) -> str:
    """The Graylog API token from the token secret's content."""
    token = content.get(TOKEN_CONTENT_KEY, "").strip()
    if not token:
        raise ConfigError(f"api_token_secret: the secret has no {TOKEN_CONTENT_KEY!r} key")
    if not _HEADER_VALUE.fullmatch(token) or any(c.isspace() for c in token):
        raise ConfigError(f"api_token_secret: {TOKEN_CONTENT_KEY!r} is not a valid token")
    return token
