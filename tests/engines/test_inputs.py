from __future__ import annotations

import pytest

from gpubridge.engines.inputs import (
    Sampling,
    chat_messages,
    embedding_output,
    embedding_texts,
    message_text,
    sampling,
)
from gpubridge.errors import InvalidInput


def test_prompt_and_system_become_a_conversation() -> None:
    assert chat_messages({"prompt": "hi", "system": "be brief"}) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


def test_messages_are_passed_as_given() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert chat_messages({"messages": messages, "prompt": "ignored"}) == messages


@pytest.mark.parametrize("data", [{}, {"prompt": 3}, {"messages": []}, {"messages": [{"x": 1}]}])
def test_a_conversation_needs_a_prompt_or_messages(data: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        chat_messages(data)


def test_text_parts_of_a_message_are_joined() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]
    assert message_text({"role": "user", "content": parts}) == "ab"


def test_sampling_reads_each_parameter_and_a_single_stop() -> None:
    params = sampling({"max_tokens": 5, "temperature": 0, "top_p": 0.5, "seed": 1, "stop": "\n"})
    assert params == Sampling(max_tokens=5, temperature=0.0, top_p=0.5, seed=1, stop=["\n"])


@pytest.mark.parametrize(
    "data", [{"max_tokens": 0}, {"max_tokens": True}, {"temperature": "hot"}, {"stop": [1]}]
)
def test_bad_sampling_parameters_are_invalid_input(data: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        sampling(data)


def test_embedding_input_is_text_or_a_list_of_texts() -> None:
    assert embedding_texts({"text": "a"}) == (["a"], False)
    assert embedding_texts({"input": ["a", "b"]}) == (["a", "b"], True)
    with pytest.raises(InvalidInput):
        embedding_texts({"text": []})


def test_embedding_output_names_one_vector_or_many() -> None:
    assert embedding_output([[1.0, 2.0]], batch=False) == {"embedding": [1.0, 2.0], "dimensions": 2}
    assert embedding_output([[1.0], [2.0]], batch=True) == {
        "embeddings": [[1.0], [2.0]],
        "dimensions": 1,
    }
