"""The integrator's options, checked once per hook; no ops here.

The endpoint rules (URL, header name, PEM, size) are the gelf library's own, applied by
its `GelfEndpointData` model, so the integrator never publishes what a sender would
refuse. Problems name the option, never a value: the options point at secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from pydantic import ValidationError

from charms.falco_k8s.v0.gelf import AUTH_CONTENT_KEY, DEFAULT_MAX_MESSAGE_BYTES, GelfEndpointData

TOKEN_CONTENT_KEY: Final = "token"  # noqa: S105 (a key name)
"""Key of the API-token secret's content that holds the Graylog API token."""

# Graylog reads max_chunk_size as a Java int.
MAX_MESSAGE_BYTES_LIMIT: Final = 2**31 - 1
# Option names, keyed by the gelf library's field names.
_OPTION_OF_FIELD: Final = {
    "url": "gelf_url",
    "auth_header_name": "auth_header",
    "ca_cert": "ca_cert",
    "max_message_bytes": "max_message_bytes",
}
_TEXT_OPTIONS: Final = (
    "gelf_url",
    "auth_header",
    "auth_secret",
    "ca_cert",
    "api_url",
    "api_token_secret",
)
# A Juju secret URI: secret:<xid> or secret://<model-uuid>/<xid>.
_SECRET_URI = re.compile(r"secret:(?://[0-9a-f-]+/)?[0-9a-z]{20}")
# What an HTTP header value can carry (RFC 9110 field-value: visible ASCII, space, tab).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]+")


class ConfigError(ValueError):
    """An option is invalid; the message names it and says why, for the status."""


@dataclass(frozen=True)
class ApiSettings:
    """Where the Graylog REST API is and which user secret holds its token."""

    url: str
    token_secret: str
    input_port: int


@dataclass(frozen=True)
class IntegratorConfig:
    """Validated options; secrets are still URIs, resolved by the charm."""

    gelf_url: str
    auth_header: str | None
    auth_secret: str | None
    ca_cert: str | None
    max_message_bytes: int


Options = Mapping[str, str | int | float | bool]


def _text(options: Options) -> dict[str, str]:
    return {name: str(options.get(name, "")).strip() for name in _TEXT_OPTIONS}


def load_config(options: Options) -> IntegratorConfig:
    """Check the endpoint's options; raise `ConfigError` naming the first bad one."""
    text = _text(options)
    if not text["gelf_url"]:
        raise ConfigError("gelf_url: required, e.g. http://graylog.example.com:12201/gelf")
    size = options.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)
    if not isinstance(size, int) or isinstance(size, bool) or size > MAX_MESSAGE_BYTES_LIMIT:
        raise ConfigError(
            f"max_message_bytes: must be a whole number up to {MAX_MESSAGE_BYTES_LIMIT}"
        )
    if bool(text["auth_header"]) != bool(text["auth_secret"]):
        raise ConfigError("auth_header and auth_secret: set both or neither")
    _check_endpoint(text, size)
    _check_secret_uri(text, "auth_secret")
    return IntegratorConfig(
        gelf_url=text["gelf_url"],
        auth_header=text["auth_header"] or None,
        auth_secret=text["auth_secret"] or None,
        ca_cert=text["ca_cert"] or None,
        max_message_bytes=size,
    )


def load_api(options: Options) -> ApiSettings | None:
    """Check the provisioning options (they hold back provisioning only); None: not asked.

    Call it once `load_config` accepted the options: the input's port is gelf_url's.
    """
    text = _text(options)
    if bool(text["api_url"]) != bool(text["api_token_secret"]):
        raise ConfigError("api_url and api_token_secret: set both (to provision) or neither")
    if not text["api_url"]:
        return None
    _check_api_url(text["api_url"])
    _check_secret_uri(text, "api_token_secret")
    port = urlsplit(text["gelf_url"]).port
    if port is None:
        raise ConfigError("gelf_url: write the input's port (e.g. :12201); api_url provisions it")
    return ApiSettings(
        url=text["api_url"].rstrip("/"), token_secret=text["api_token_secret"], input_port=port
    )


def _check_secret_uri(text: Mapping[str, str], name: str) -> None:
    if text[name] and not _SECRET_URI.fullmatch(text[name]):
        raise ConfigError(f"{name}: must be a Juju secret URI (secret:...), see juju secrets")


def _check_endpoint(text: Mapping[str, str], size: int) -> None:
    """Apply the gelf library's rules, reporting each problem under the option's name."""
    try:
        GelfEndpointData(
            url=text["gelf_url"],
            auth_header_name=text["auth_header"] or None,
            auth_secret_id="secret:placeholder" if text["auth_header"] else None,
            ca_cert=text["ca_cert"] or None,
            max_message_bytes=size,
        )
    except ValidationError as e:
        detail = e.errors(include_url=False, include_input=False)[0]
        where = str(detail["loc"][0]) if detail["loc"] else "url"
        ctx = detail.get("ctx") or {}
        reason = str(ctx["error"]) if detail["type"] == "value_error" else detail["msg"]
        raise ConfigError(f"{_OPTION_OF_FIELD.get(where, where)}: {reason}") from None
    port = urlsplit(text["gelf_url"]).port
    if port == 0:
        raise ConfigError("gelf_url: the port must be 1-65535")


def _check_api_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ConfigError("api_url: must be an http(s) URL with a valid host and port") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in url)
    ):
        raise ConfigError("api_url: must be an http(s) URL, e.g. https://graylog:9000/api")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError("api_url: no credentials, query or fragment; the token goes in a secret")


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
