"""Counting a prompt's tokens at admission, for the hold of a token-priced job.

The hold must cover the most a job can cost, so the count may be high but never low. With the
model's own ``tokenizer.json`` on this machine (a local directory, a ``package:`` source, or the
local Hugging Face cache; never the network) the text is counted with it; otherwise the UTF-8
byte length bounds it, since byte-level BPE and SentencePiece with byte fallback never make more
tokens than bytes. Either way each message adds ``MESSAGE_ALLOWANCE`` for the chat template and
special tokens around it. Only the ``tokenizers`` package is used, never transformers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

MESSAGE_ALLOWANCE = 16
"""Tokens allowed per message (and once for the reply's header) for the chat template's role
markers, separators and special tokens; Llama 3, Qwen and ChatML templates use under ten."""

PACKAGE_PREFIX = "package:"
TOKENIZER_FILE = "tokenizer.json"


def prompt_texts(payload: dict[str, Any]) -> tuple[list[str], int]:
    """The texts of a job's input that reach the model as prompt, and how many messages the
    chat template wraps (a bare prompt counts as one, a system prompt as another)."""
    texts: list[str] = []
    messages = 0
    for key in ("system", "prompt", "text", "input"):
        value = payload.get(key)
        if isinstance(value, str):
            texts.append(value)
            messages += 1
        elif isinstance(value, list):
            strings = [v for v in value if isinstance(v, str)]
            texts.extend(strings)
            messages += len(strings)
    for message in payload.get("messages") or []:
        if not isinstance(message, dict):
            continue
        messages += 1
        texts.extend(_content_texts(message.get("content")))
    return texts, messages


def _content_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                yield part
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def byte_bound(texts: list[str]) -> int:
    """An upper bound on the tokens of ``texts`` under any byte-level tokenizer."""
    return sum(len(text.encode("utf-8")) for text in texts)


class TokenCounter:
    """Counts prompt tokens per model source, loading each model's tokenizer once.

    ``cache_dir`` is the Hugging Face cache to look in (default: huggingface_hub's own).
    """

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = cache_dir
        self._tokenizers: dict[str, Tokenizer | None] = {}
        self._lock = threading.Lock()

    def count(self, source: str, payload: dict[str, Any]) -> int:
        """Prompt tokens of ``payload`` for the model at ``source``, never fewer than the
        model itself will count (chat template included)."""
        texts, messages = prompt_texts(payload)
        if not messages:
            return 0
        allowance = (messages + 1) * MESSAGE_ALLOWANCE
        tokenizer = self.tokenizer(source)
        if tokenizer is None:
            return byte_bound(texts) + allowance
        counted = sum(len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts)
        return counted + allowance

    def tokenizer(self, source: str) -> Tokenizer | None:
        """The tokenizer of the model at ``source``, or None when none is on this machine."""
        with self._lock:
            if source not in self._tokenizers:
                self._tokenizers[source] = self._load(source)
            return self._tokenizers[source]

    def _load(self, source: str) -> Tokenizer | None:
        path = self._tokenizer_file(source)
        if path is None:
            return None
        try:
            from tokenizers import Tokenizer

            loaded = Tokenizer.from_file(str(path))
        except Exception:
            log.warning(
                "a tokenizer could not be read; prompts are bounded by their bytes",
                extra={"source": source, "path": str(path)},
                exc_info=True,
            )
            return None
        return loaded

    def _tokenizer_file(self, source: str) -> Path | None:
        if source.startswith(PACKAGE_PREFIX):
            directory = package_directory(source)
        elif source.startswith(("/", "./", "../", "~")) or Path(source).exists():
            directory = Path(source).expanduser()
        else:
            return self._cached_file(source)
        if directory is None:
            return None
        candidate = directory / TOKENIZER_FILE
        return candidate if candidate.is_file() else None

    def _cached_file(self, repo_id: str) -> Path | None:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(repo_id, TOKENIZER_FILE, cache_dir=self.cache_dir)
        except Exception:  # an id the hub would refuse: nothing cached under it
            return None
        return Path(found) if isinstance(found, str) else None


def package_directory(source: str) -> Path | None:
    """The directory a ``package:<module>/<path>`` source names, found without importing
    the package (as the local runtimes resolve it); None when it is not installed."""
    module, _, inner = source.removeprefix(PACKAGE_PREFIX).partition("/")
    top, *rest = module.split(".") if module else [""]
    spec = find_spec(top) if top else None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    return root / inner if inner else root
