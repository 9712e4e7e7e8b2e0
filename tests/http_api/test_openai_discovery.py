"""The Bazaar description in the 402 of each OpenAI-compatible route."""

from __future__ import annotations

from x402.extensions.bazaar import validate_discovery_extension
from x402.extensions.bazaar.types import parse_discovery_extension
from x402.schemas import PaymentRequired

from gpubridge.http_api.openai_discovery import EXAMPLE_BODIES
from tests.support.x402_app import unb64


async def test_the_example_of_each_openai_route_is_answered_with_a_402_describing_it(packaged):
    _, client = packaged

    for path, example in EXAMPLE_BODIES.items():
        if "file" in example:
            form = {k: v for k, v in example.items() if k != "file"}
            files = {"file": (example["file"], b"ID3" + bytes(64), "audio/mpeg")}
            response = await client.post(path, data=form, files=files)
        else:
            response = await client.post(path, json=example)
        assert response.status_code == 402, (path, response.text)
        required = PaymentRequired.model_validate(unb64(response.headers["payment-required"]))
        assert required.extensions is not None
        bazaar = parse_discovery_extension(required.extensions["bazaar"])
        assert validate_discovery_extension(bazaar).valid, path
        assert bazaar.info.input.body == example  # type: ignore[union-attr]
