"""Prompt tokens counted at admission: with the model's own tokenizer when it is on this machine,
else bounded by the text's UTF-8 bytes; never below what the model counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from gpubridge.catalog.tokens import (
    MESSAGE_ALLOWANCE,
    TokenCounter,
    byte_bound,
    package_directory,
    prompt_texts,
)

CJK = "我们今天在北京的公园里散步。天气很好。" * 10 + "这是一段中文"  # 196 characters
CODE = "def f(x):\n    return {k: v**2 for k, v in x.items() if v}\n" * 20


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer.json trained on a few English lines, in its own directory."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = ["Hello world, the quick brown fox jumps over the lazy dog."] * 50
    tokenizer.train_from_iterator(corpus, trainer)
    directory = tmp_path_factory.mktemp("tiny-tokenizer")
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def encoded(directory: Path, text: str) -> int:
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_prompt_texts_gathers_the_prompt_the_system_and_every_message() -> None:
    payload = {
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        ],
        "max_tokens": 5,
    }
    assert prompt_texts(payload) == (["Be brief.", "Hi", "Hello"], 3)
    assert prompt_texts({"prompt": "Hello world"}) == (["Hello world"], 1)
    assert prompt_texts({"input": ["a", "b"]}) == (["a", "b"], 2)


def test_without_a_tokenizer_a_cjk_prompt_is_bounded_by_its_utf8_bytes(tmp_path: Path) -> None:
    counter = TokenCounter(cache_dir=tmp_path)
    count = counter.count("some-org/not-on-this-machine", {"prompt": CJK})
    assert byte_bound([CJK]) == 3 * len(CJK)
    assert count == 3 * len(CJK) + 2 * MESSAGE_ALLOWANCE
    # The old estimate, characters / 4, counted 49 tokens for these 196 characters.
    assert count > len(CJK)


def test_the_byte_bound_is_never_below_a_byte_level_tokenizers_count(tiny_tokenizer: Path) -> None:
    for text in (CJK, CODE, "Hello world", "emoji 🙂🙃 and ünïcödé", "x" * 4000):
        assert encoded(tiny_tokenizer, text) <= byte_bound([text])


def test_a_local_tokenizer_counts_the_prompt_plus_the_template_allowance(
    tiny_tokenizer: Path,
) -> None:
    counter = TokenCounter()
    text = "the quick brown fox jumps over the lazy dog. " * 20
    payload = {"system": "Be brief.", "messages": [{"role": "user", "content": text}]}
    expected = encoded(tiny_tokenizer, "Be brief.") + encoded(tiny_tokenizer, text)
    count = counter.count(str(tiny_tokenizer), payload)
    assert count == expected + 3 * MESSAGE_ALLOWANCE
    # Tighter than the bound the counter falls back to without the tokenizer.
    assert count < byte_bound(prompt_texts(payload)[0])


def test_the_tokenizer_is_loaded_once_per_model(tiny_tokenizer: Path) -> None:
    counter = TokenCounter()
    first = counter.tokenizer(str(tiny_tokenizer))
    assert first is not None
    assert counter.tokenizer(str(tiny_tokenizer)) is first


def test_a_packaged_models_tokenizer_is_found_without_importing_its_package(
    tiny_tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "shipped_model_pkg"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "model" / "tokenizer.json").write_bytes(
        (tiny_tokenizer / "tokenizer.json").read_bytes()
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source = "package:shipped_model_pkg/model"
    assert package_directory(source) == package / "model"
    counter = TokenCounter()
    assert counter.count(source, {"prompt": "Hello world"}) == (
        encoded(tiny_tokenizer, "Hello world") + 2 * MESSAGE_ALLOWANCE
    )
    assert package_directory("package:no_such_package_here/model") is None


def test_a_hub_models_tokenizer_is_read_from_the_local_cache_only(
    tiny_tokenizer: Path, tmp_path: Path
) -> None:
    snapshot = tmp_path / "models--some-org--tiny-chat" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer.json").write_bytes((tiny_tokenizer / "tokenizer.json").read_bytes())
    refs = tmp_path / "models--some-org--tiny-chat" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    counter = TokenCounter(cache_dir=tmp_path)
    assert counter.count("some-org/tiny-chat", {"prompt": CODE}) == (
        encoded(tiny_tokenizer, CODE) + 2 * MESSAGE_ALLOWANCE
    )
    # Another repository is not in the cache: the byte bound, and no network.
    assert counter.tokenizer("some-org/other-model") is None


def test_an_unreadable_tokenizer_falls_back_to_the_byte_bound(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not a tokenizer")
    counter = TokenCounter()
    assert counter.count(str(tmp_path), {"prompt": CJK}) == 3 * len(CJK) + 2 * MESSAGE_ALLOWANCE


def test_an_input_without_text_counts_nothing() -> None:
    assert TokenCounter().count("any/model", {"max_tokens": 5}) == 0
