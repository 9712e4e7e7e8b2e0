"""Reading job input for text services and shaping their output, shared by the runtimes.

The gateway validates input against the catalog's JSON Schema first; these checks are the
runtimes' own guard and raise ``InvalidInput`` (never retried on another backend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gpubridge.errors import InvalidInput

Message = dict[str, Any]


@dataclass(frozen=True)
class Sampling:
    """Generation parameters a job may set; ``None`` leaves the runtime's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


def _invalid(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path} {message}", violations=[{"path": path, "message": message}])


def chat_messages(data: dict[str, Any]) -> list[Message]:
    """The conversation: ``messages`` as given, or built from ``system`` and ``prompt``."""
    messages = data.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise _invalid("messages", "must be a non-empty list")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise _invalid(f"messages.{i}", "must be an object with a string role")
        return list(messages)
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise _invalid("prompt", "is required (a string) unless messages are given")
    built: list[Message] = []
    system = data.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise _invalid("system", "must be a string")
        built.append({"role": "system", "content": system})
    built.append({"role": "user", "content": prompt})
    return built


def message_text(message: Message) -> str:
    """A message's text, joining the text parts of multi-part content."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    raise _invalid("messages.content", "must be a string or a list of parts")


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(key, "must be a number")
    return float(value)


def _integer(data: dict[str, Any], key: str, minimum: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid(key, f"must be an integer >= {minimum}")
    return value


def sampling(data: dict[str, Any]) -> Sampling:
    """The sampling parameters of a generation request."""
    stop = data.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise _invalid("stop", "must be a string or a list of strings")
    return Sampling(
        max_tokens=_integer(data, "max_tokens", 1),
        temperature=_number(data, "temperature"),
        top_p=_number(data, "top_p"),
        seed=_integer(data, "seed", 0),
        stop=[s for s in stops if s],
    )


def embedding_texts(data: dict[str, Any]) -> tuple[list[str], bool]:
    """The texts to embed (``text``, or ``input`` as OpenAI names it) and whether it was a list."""
    key = "text" if "text" in data else "input"
    value = data.get(key)
    if isinstance(value, str):
        return [value], False
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value), True
    raise _invalid(key, "must be a string or a non-empty list of strings")


def embedding_output(vectors: Sequence[Sequence[float]], batch: bool) -> dict[str, Any]:
    """``{"embedding", "dimensions"}`` for one text, ``{"embeddings", "dimensions"}`` for a list."""
    rows = [list(map(float, v)) for v in vectors]
    dimensions = len(rows[0]) if rows else 0
    if batch:
        return {"embeddings": rows, "dimensions": dimensions}
    return {"embedding": rows[0], "dimensions": dimensions}


def estimate_tokens(text: str) -> int:
    """A rough token count (four characters a token) for when no tokenizer is at hand."""
    return math.ceil(len(text) / 4)
