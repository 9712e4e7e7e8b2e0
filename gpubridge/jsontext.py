"""Parsing untrusted JSON text (request bodies, query parameters, payment headers, webhooks).

``json.loads`` alone is not safe on hostile input: it recurses once per nesting level, so a
deeply nested document ends in ``RecursionError`` (or, if anything raised the interpreter's
recursion limit, a crashed process); an over-long integer raises a bare ``ValueError``; and it
accepts lone UTF-16 surrogates, which cannot be encoded, stored or sent on. `parse_json`
refuses all of these with `InvalidJSON`, a ``ValueError``.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects accepted; no request needs more."""

MAX_INT_DIGITS = 4300
"""The longest integer accepted (Python's own default limit on int/str conversion)."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class InvalidJSON(ValueError):
    """Text this server does not accept as JSON; the message says why."""


def nests_too_deep(text: str) -> bool:
    """Whether arrays and objects in ``text`` nest deeper than `MAX_DEPTH`, seen without parsing.

    Brackets inside strings do not count. Cheap for ordinary documents: the count only runs
    when the text holds more opening brackets than `MAX_DEPTH`.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


def parse_json(data: str | bytes | bytearray) -> Any:
    """The JSON value in ``data`` (UTF-8, -16 or -32 when bytes); `InvalidJSON` otherwise."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode(json.detect_encoding(data))
        except UnicodeDecodeError:
            raise InvalidJSON("the JSON text is not valid UTF-8") from None
    else:
        text = data
    if nests_too_deep(text):
        raise InvalidJSON(f"the JSON nests deeper than {MAX_DEPTH} levels")
    try:
        value = _DECODER.decode(text)
    except InvalidJSON:
        raise
    except RecursionError:
        raise InvalidJSON(f"the JSON nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidJSON(str(exc)) from None
    if _MAYBE_SURROGATE.search(text) and _has_lone_surrogate(value):
        raise InvalidJSON("the JSON has a lone UTF-16 surrogate in a string")
    return value


def _int(literal: str) -> int:
    if len(literal) - literal.startswith("-") > MAX_INT_DIGITS:
        raise InvalidJSON(f"the JSON has an integer longer than {MAX_INT_DIGITS} digits")
    return int(literal)


_DECODER = json.JSONDecoder(parse_int=_int)
"""``json.loads`` with ``parse_int`` builds a decoder on every call; this one serves them all
(it keeps no state between documents)."""


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a string in ``value`` keeps a surrogate (a valid pair is one character).

    Recursion is bounded: ``value`` nests at most `MAX_DEPTH` deep.
    """
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False
