"""Checking a job's input against its service's JSON Schema, fast when the input is valid.

jsonschema decides, and explains what it refuses (``explain.violations``), in about 100 us
for an LLM request. jsonschema-rs proves valid input in about 1 us, but it is another
implementation: its verdict is taken only where the two cannot differ, and only when it says
valid. That is where:

- the schema uses only the keywords in ``_ASSERTIONS`` and ``_ANNOTATIONS``, and those that
  hold schemas (``properties``, ``items``, ``anyOf``...). So no ``$ref``, and no ``pattern``:
  Rust's and Python's regular expressions differ. Only strings and integers in ``enum``, a
  string in ``const``, an integer in ``multipleOf``;
- the input holds only what JSON gives Python, with no float that is a whole number (an
  integer field refuses ``8000.0`` here, and jsonschema-rs takes it), no integer beyond 64
  bits, no float that is not finite and no lone UTF-16 surrogate (see ``_agreeable``).

Anything else, and anything it refuses, goes to jsonschema, whose answer stands. Both load on
first use (jsonschema-rs about 30 ms, jsonschema about 60 ms), not with the gateway.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gpubridge.catalog.explain import violations

if TYPE_CHECKING:
    from jsonschema import TypeChecker
    from jsonschema.protocols import Validator

_ANNOTATIONS = frozenset(
    {
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
    }
)
"""Keywords that neither validator asserts (formats included: neither checks them here)."""

_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_LONGEST_INT = 2**63
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _types(value: Any) -> bool:
    named = [value] if isinstance(value, str) else value
    return isinstance(named, list) and all(t in _TYPES for t in named)


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and abs(value) < _LONGEST_INT


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _whole(value: Any) -> bool:
    """An integer that both read alike: not a bool (``True == 1`` in Python), within 64 bits."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < _LONGEST_INT


def _count(value: Any) -> bool:
    return _whole(value) and value >= 0


def _choices(value: Any) -> bool:
    # Strings and integers only: jsonschema takes 1.0 as equal to 1.
    return isinstance(value, list) and all(isinstance(v, str) or _whole(v) for v in value)


_ASSERTIONS: dict[str, Callable[[Any], bool]] = {
    "type": _types,
    "minimum": _finite_number,
    "maximum": _finite_number,
    "exclusiveMinimum": _finite_number,
    "exclusiveMaximum": _finite_number,
    "multipleOf": lambda value: _count(value) and value > 0,
    "minLength": _count,
    "maxLength": _count,
    "minItems": _count,
    "maxItems": _count,
    "minProperties": _count,
    "maxProperties": _count,
    "required": _strings,
    "enum": _choices,
    "const": lambda value: isinstance(value, str),
}
"""Keywords both validators assert alike, each with what its value must be for that to hold."""

_SCHEMA_MAP = "properties"
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf"})
_SCHEMA_VALUES = frozenset({"additionalProperties", "items", "not"})


def _is_integer(_checker: TypeChecker, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.cache
def _input_validator_class() -> type[Validator]:
    from jsonschema import Draft202012Validator
    from jsonschema.validators import extend

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer)
    made: type[Validator] = extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, type_checker=checker
    )
    return made


def input_validator(schema: dict[str, Any]) -> Validator:
    """A jsonschema validator of ``schema``: JSON Schema 2020-12, except that ``8000.0`` is
    not an integer: an integer field gets an ``int`` or a 422, so no float reaches the hold's
    arithmetic or an engine that wants a count."""
    return _input_validator_class()(schema)


def fast_checkable(schema: Any, *, top: bool = True) -> bool:
    """Whether jsonschema-rs judges valid input of ``schema`` as ``input_validator`` does."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for keyword, value in schema.items():
        if keyword == "$schema":
            fits = top and value == _DRAFT
        elif keyword in _ASSERTIONS:
            fits = _ASSERTIONS[keyword](value)
        elif keyword == _SCHEMA_MAP:
            fits = isinstance(value, dict) and all(
                fast_checkable(s, top=False) for s in value.values()
            )
        elif keyword in _SCHEMA_LISTS:
            fits = isinstance(value, list) and all(fast_checkable(s, top=False) for s in value)
        elif keyword in _SCHEMA_VALUES:
            fits = fast_checkable(value, top=False)
        else:
            fits = keyword in _ANNOTATIONS
        if not fits:
            return False
    return True


def _agreeable(payload: Any) -> bool:
    """Whether ``payload`` holds only values on which both validators agree (see above)."""
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                return False
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -_LONGEST_INT <= value < _LONGEST_INT:
                return False
        elif isinstance(value, float):
            if value.is_integer() or not math.isfinite(value):
                return False
        elif isinstance(value, dict):
            for key in value:
                if not isinstance(key, str) or (
                    not key.isascii() and _SURROGATE.search(key) is not None
                ):
                    return False
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        else:
            return False
    return True


class InputCheck:
    """The validation of one service's input (made when its first input comes)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._fast: Callable[[Any], bool] | None = None
        if fast_checkable(schema):
            import jsonschema_rs

            # No $ref is allowed, so it descends no deeper than the schema itself.
            self._fast = jsonschema_rs.Draft202012Validator(schema, validate_formats=False).is_valid
        self._full: Validator | None = None

    @property
    def fast(self) -> bool:
        """Whether valid input may be proven by jsonschema-rs."""
        return self._fast is not None

    def _proven(self, payload: Any) -> bool:
        assert self._fast is not None
        try:
            return self._fast(payload)
        except Exception:  # jsonschema decides whatever jsonschema-rs cannot judge
            return False

    def violations(self, payload: Any) -> list[dict[str, Any]]:
        """What the schema refuses in ``payload`` (see ``explain.violations``); [] if none."""
        if self._fast is not None and _agreeable(payload) and self._proven(payload):
            return []
        if self._full is None:
            self._full = input_validator(self.schema)
        return violations(self._full, payload)
