"""An x402 facilitator on the local chain: the official SDK's facilitator (``exact`` on EVM,
v1 and v2, and ``upto`` through Permit2, v2) behind ``POST /verify``, ``POST /settle`` and
``GET /supported``, as an in-process ASGI app."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from web3 import EthereumTesterProvider, Web3
from x402 import x402FacilitatorSync
from x402.mechanisms.evm.exact import register_exact_evm_facilitator
from x402.mechanisms.evm.signers import FacilitatorWeb3Signer
from x402.mechanisms.evm.upto import UptoEvmFacilitatorScheme
from x402.schemas import PaymentPayload, PaymentRequirements
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequirementsV1

from tests.support.local_chain import LocalChain

FACILITATOR_KEY = "0x" + "00" * 31 + "03"


def facilitator_app(chain: LocalChain) -> Starlette:
    """The SDK facilitator, paying gas from eth-tester's third funded account."""
    signer = FacilitatorWeb3Signer(FACILITATOR_KEY, rpc_url="http://127.0.0.1:9")
    signer._w3 = Web3(EthereumTesterProvider(chain.tester))  # the local chain, not a URL
    facilitator = x402FacilitatorSync()
    network = f"eip155:{chain.chain_id}"
    register_exact_evm_facilitator(facilitator, signer, networks=network)
    facilitator.register([network], UptoEvmFacilitatorScheme(signer))  # the SDK has no helper
    calls: list[str] = []

    def parse(body: dict[str, Any]) -> tuple[Any, Any]:
        if body["x402Version"] == 1:
            return (
                PaymentPayloadV1.model_validate(body["paymentPayload"]),
                PaymentRequirementsV1.model_validate(body["paymentRequirements"]),
            )
        return (
            PaymentPayload.model_validate(body["paymentPayload"]),
            PaymentRequirements.model_validate(body["paymentRequirements"]),
        )

    async def verify(request: Request) -> Response:
        calls.append("verify")
        result = facilitator.verify(*parse(await request.json()))
        return JSONResponse(result.model_dump(by_alias=True, exclude_none=True))

    async def settle(request: Request) -> Response:
        calls.append("settle")
        result = facilitator.settle(*parse(await request.json()))
        return JSONResponse(result.model_dump(by_alias=True, exclude_none=True))

    async def supported(request: Request) -> Response:
        calls.append("supported")
        answer = facilitator.get_supported()
        return JSONResponse(answer.model_dump(by_alias=True, exclude_none=True))

    app = Starlette(
        routes=[
            Route("/verify", verify, methods=["POST"]),
            Route("/settle", settle, methods=["POST"]),
            Route("/supported", supported, methods=["GET"]),
        ]
    )
    app.state.calls = calls
    return app
