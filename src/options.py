"""The charm's options, typed, and the one error an operator can fix.

Each wing declares the options it reads as an `Options` model and loads them with
`load_options`: an invalid value becomes an ``InvalidStateError`` naming the option, which holds
back only the part of the reconcile that option feeds. Nothing downstream re-validates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict


class InvalidStateError(ValueError):
    """An operator-fixable problem in config or relation data; the message is the status text."""


class Options(BaseModel):
    """Some of config.yaml's options, typed; field names are the option names operators type."""

    model_config = ConfigDict(frozen=True, extra="ignore")


_O = TypeVar("_O", bound=Options)


def load_options(model: type[_O], config: Mapping[str, object]) -> _O:
    """``model``'s options from the charm's config; InvalidStateError names each bad one."""
    raw = {key.replace("-", "_"): value for key, value in config.items()}
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise InvalidStateError(describe_validation_error(exc)) from None


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """One line naming each bad option (or relation field) and why, as a status needs it."""
    reasons: list[str] = []
    for item in error.errors():
        option = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "literal_error":
            message = f"{message} (got {item['input']!r})"
        reasons.append(f"{option}: {message}")
    return "; ".join(reasons)
