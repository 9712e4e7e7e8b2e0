"""Chat completions bodies the fuzzer found mishandled: each field is checked as documented."""

from __future__ import annotations

import pytest

from tests.http_api.test_malformed_input import balance_micros, funded
from tests.support.gateway_app import auth

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": "hi", "tool_calls": {}},
        {"role": "user", "content": [{"type": "text", "text": {}}]},
    ],
    ids=["tool_calls-object", "text-part-object"],
)
async def test_a_message_field_of_the_wrong_type_is_a_422(gateway, message):
    app, client = gateway
    key = await funded(app, client)
    response = await client.post(CHAT, json={"messages": [message]}, headers=auth(key))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "messages"
    assert await balance_micros(client, key) == 10_000_000


async def test_an_overridden_max_tokens_must_still_be_in_range(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 8,
        "max_tokens": -5,
    }
    response = await client.post(CHAT, json=body, headers=auth(key))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "max_tokens"
    assert await balance_micros(client, key) == 10_000_000
