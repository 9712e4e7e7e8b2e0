"""The bounded JSON parser every door uses for untrusted text."""

from __future__ import annotations

import json
import sys

import pytest

from gpubridge.jsontext import MAX_DEPTH, InvalidJSON, parse_json


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_ordinary_json_parses_as_json_loads_does() -> None:
    text = '{"a": [1, 2.5, "x", null, true], "b": {"c": "\\ud83d\\ude00"}, "d": -7}'
    assert parse_json(text) == json.loads(text)
    assert parse_json(text.encode()) == json.loads(text)
    assert parse_json(text.encode("utf-16")) == json.loads(text)
    assert parse_json(b"\xef\xbb\xbf{}") == {}


def test_nesting_up_to_the_limit_parses_and_one_more_level_is_refused() -> None:
    assert parse_json(nested(MAX_DEPTH)) is not None
    with pytest.raises(InvalidJSON, match="deeper than 64"):
        parse_json(nested(MAX_DEPTH + 1))
    with pytest.raises(InvalidJSON, match="deeper than 64"):
        parse_json('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"text": "[" * 10_000 + '{"\\" ]' * 100, "list": ["]]]", "[[["] * 100})
    assert parse_json(text) == json.loads(text)


def test_a_document_nested_100000_deep_is_refused_even_with_a_huge_recursion_limit() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        with pytest.raises(InvalidJSON, match="deeper than 64"):
            parse_json('{"email": ' + nested(100_000) + "}")
    finally:
        sys.setrecursionlimit(limit)


def test_an_integer_over_4300_digits_is_refused_and_4300_digits_parse() -> None:
    assert parse_json("9" * 4300) == int("9" * 4300)
    assert parse_json("-" + "9" * 4300) == -int("9" * 4300)
    with pytest.raises(InvalidJSON, match="4300 digits"):
        parse_json('{"n": ' + "9" * 4301 + "}")


@pytest.mark.parametrize("text", ['"\\ud800"', '["a\\udc00b"]', '{"\\ud800": 1}'])
def test_a_lone_surrogate_is_refused(text: str) -> None:
    with pytest.raises(InvalidJSON, match="surrogate"):
        parse_json(text)


def test_an_escaped_backslash_before_u_d800_is_not_a_surrogate() -> None:
    assert parse_json('"\\\\ud800"') == "\\ud800"


@pytest.mark.parametrize("data", [b"\xed\xa0\x80", b'"\xff"', "{", "[1,]", "", b"{} x"])
def test_text_that_is_not_json_is_an_invalid_json_value_error(data: str | bytes) -> None:
    with pytest.raises(InvalidJSON) as caught:
        parse_json(data)
    assert isinstance(caught.value, ValueError)
