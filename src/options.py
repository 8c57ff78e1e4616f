"""The charm's options, typed, and the one error an operator can fix.

Each wing declares the options it reads as a frozen dataclass and loads them with
`load_options`; the dataclass's ``__post_init__`` checks them and raises `InvalidStateError`
naming the option, which holds back only the part of the reconcile that option feeds. Standard
library only: every hook loads this, and a validation library costs more to import than ops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar, cast


class InvalidStateError(ValueError):
    """An operator-fixable problem in config or relation data; the message is the status text."""


_O = TypeVar("_O")

_KINDS: dict[type, str] = {bool: "true or false", int: "an integer", str: "a string"}


def load_options(model: type[_O], config: Mapping[str, object]) -> _O:
    """``model``'s options from the charm's config (each field's default when unset).

    Juju has checked each value against config.yaml's type already; a value of another type
    than the field's default is refused all the same, naming the option.
    """
    values: dict[str, Any] = {}
    for field in dataclasses.fields(model):  # pyright: ignore[reportArgumentType]
        value = config.get(field.name, field.default)
        kind: type[object] = type(cast("object", field.default))
        if type(value) is not kind:
            raise option_error(field.name, f"must be {_KINDS.get(kind, kind.__name__)}", value)
        values[field.name] = value
    return model(**values)


def option_error(option: str, problem: str, got: object = None) -> InvalidStateError:
    """The error naming ``option`` and what is wrong with it, with the value when it helps."""
    shown = f" (got {got!r})" if got is not None else ""
    return InvalidStateError(f"{option}: {problem}{shown}")
