"""The chain as x402 needs it, over web3's ``AsyncWeb3``: token reads, the sanctions oracle,
receipts and blocks, and sending ``transferWithAuthorization`` with the operator's key.

Imported only when a payment needs the chain (web3 is a heavy import).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from gpubridge.payments.x402.codec import Authorization
from gpubridge.recursion import keep_recursion_limit

with keep_recursion_limit():  # eth_account imports py_ecc, which raises it process-wide
    from eth_account import Account
    from web3 import AsyncHTTPProvider, AsyncWeb3
    from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound

RPC_TIMEOUT_S = 15.0

TOKEN_ABI: list[dict[str, Any]] = [
    {
        "name": "balanceOf",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "account", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "name": "authorizationState",
        "type": "function",
        "stateMutability": "view",
        "inputs": [
            {"name": "authorizer", "type": "address"},
            {"name": "nonce", "type": "bytes32"},
        ],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "name": "transferWithAuthorization",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [
            {"name": "from", "type": "address"},
            {"name": "to", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "validAfter", "type": "uint256"},
            {"name": "validBefore", "type": "uint256"},
            {"name": "nonce", "type": "bytes32"},
            {"name": "v", "type": "uint8"},
            {"name": "r", "type": "bytes32"},
            {"name": "s", "type": "bytes32"},
        ],
        "outputs": [],
    },
]
ORACLE_ABI: list[dict[str, Any]] = [
    {
        "name": "isSanctioned",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "addr", "type": "address"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


class ChainUnavailable(Exception):
    """The RPC node could not answer."""


class Reverted(Exception):
    """A transaction reverted (in simulation or on chain)."""


@dataclass(frozen=True)
class Log:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    index: int = 0
    """The log's position in its block (``logIndex``): with the chain and the transaction
    hash, it names one transfer."""


@dataclass(frozen=True)
class MinedLog:
    """A log found by a block-range query, with the transaction and block it is in."""

    tx_hash: str
    block_number: int
    log: Log


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    status: int
    block_number: int
    logs: tuple[Log, ...]


class Chain:
    """Reads and writes one EVM chain; every RPC failure surfaces as ``ChainUnavailable``."""

    def __init__(self, w3: AsyncWeb3[Any]) -> None:
        self.w3 = w3
        self._send_lock = asyncio.Lock()

    @classmethod
    def connect(cls, rpc_url: str) -> Chain:
        provider = AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_S})
        return cls(AsyncWeb3(provider))

    async def permit2_nonce_used(self, owner: str, nonce: int) -> bool:
        """Whether Permit2 has spent ``owner``'s unordered nonce (an upto payment settled)."""
        from gpubridge.payments.x402.upto import PERMIT2_ADDRESS, PERMIT2_NONCE_BITMAP_ABI

        permit2 = self._contract(PERMIT2_ADDRESS, PERMIT2_NONCE_BITMAP_ABI)
        owner = self.w3.to_checksum_address(owner)
        word = await self._call(permit2.functions.nonceBitmap(owner, nonce >> 8).call())
        return bool((int(word) >> (nonce & 0xFF)) & 1)

    def sync_web3(self) -> Any:
        """A synchronous ``Web3`` on the same node (the x402 SDK's facilitator code is
        synchronous): an in-process test chain is shared, a node is reached at its URL."""
        from web3 import HTTPProvider, Web3

        provider = self.w3.provider
        tester = getattr(provider, "ethereum_tester", None)
        if tester is not None:
            from web3 import EthereumTesterProvider

            return Web3(EthereumTesterProvider(tester))
        uri = getattr(provider, "endpoint_uri", None)
        return Web3(HTTPProvider(str(uri), request_kwargs={"timeout": RPC_TIMEOUT_S}))

    async def close(self) -> None:
        disconnect = getattr(self.w3.provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()

    def _contract(self, address: str, abi: list[dict[str, Any]]) -> Any:
        return self.w3.eth.contract(address=self.w3.to_checksum_address(address), abi=abi)

    async def _call(self, call: Any) -> Any:
        try:
            return await call
        except Exception as exc:  # any RPC or transport failure
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def balance_of(self, token: str, owner: str) -> int:
        token_contract = self._contract(token, TOKEN_ABI)
        checksummed = self.w3.to_checksum_address(owner)
        return int(await self._call(token_contract.functions.balanceOf(checksummed).call()))

    async def authorization_state(self, token: str, authorizer: str, nonce: bytes) -> bool:
        token_contract = self._contract(token, TOKEN_ABI)
        call = token_contract.functions.authorizationState(
            self.w3.to_checksum_address(authorizer), nonce
        ).call()
        return bool(await self._call(call))

    async def is_sanctioned(self, oracle: str, address: str) -> bool:
        contract = self._contract(oracle, ORACLE_ABI)
        call = contract.functions.isSanctioned(self.w3.to_checksum_address(address)).call()
        return bool(await self._call(call))

    async def block_number(self) -> int:
        return int(await self._call(self.w3.eth.get_block_number()))

    async def block_timestamp(self, number: int) -> int:
        block = await self._call(self.w3.eth.get_block(number))
        return int(block["timestamp"])

    async def logs(
        self, address: str, topics: list[bytes | None], from_block: int, to_block: int
    ) -> list[MinedLog]:
        """The logs ``address`` emitted in blocks ``from_block..to_block`` matching ``topics``
        (``None`` matches any), in chain order."""
        query: Any = {
            "address": self.w3.to_checksum_address(address),
            "topics": ["0x" + t.hex() if t is not None else None for t in topics],
            "fromBlock": from_block,
            "toBlock": to_block,
        }
        raw = await self._call(self.w3.eth.get_logs(query))
        found = [
            MinedLog(
                tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                block_number=int(log["blockNumber"]),
                log=Log(
                    address=str(log["address"]).lower(),
                    topics=tuple(bytes(topic) for topic in log["topics"]),
                    data=bytes(log["data"]),
                    index=int(log["logIndex"]),
                ),
            )
            for log in raw
        ]
        return sorted(found, key=lambda m: m.block_number)

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined transaction, or None when it is unknown or pending."""
        try:
            raw = await self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        except Exception as exc:  # any RPC or transport failure
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from None
        return _receipt(raw)

    async def transfer_with_authorization(
        self, key: str, token: str, auth: Authorization, signature: bytes
    ) -> str:
        """Simulate, sign and send ``transferWithAuthorization``; return the tx hash.

        ``Reverted`` when the simulation reverts (nothing was sent).
        """
        operator = Account.from_key(key)
        v = signature[64] if signature[64] >= 27 else signature[64] + 27
        call = self._contract(token, TOKEN_ABI).functions.transferWithAuthorization(
            self.w3.to_checksum_address(auth.payer),
            self.w3.to_checksum_address(auth.to),
            auth.value,
            auth.valid_after,
            auth.valid_before,
            auth.nonce,
            v,
            signature[:32],
            signature[32:64],
        )
        async with self._send_lock:
            try:
                nonce = await self.w3.eth.get_transaction_count(operator.address, "pending")
                tx = await call.build_transaction({"from": operator.address, "nonce": nonce})
            except Exception as exc:  # a revert, or any RPC or transport failure
                if _is_revert(exc):
                    raise Reverted(str(exc)) from None
                raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from None
            signed = operator.sign_transaction(tx)
            sent = await self._call(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        return "0x" + bytes(sent).hex()

    async def wait_for_receipt(self, tx_hash: str, timeout_s: float) -> Receipt:
        try:
            raw = await self.w3.eth.wait_for_transaction_receipt(
                tx_hash,  # type: ignore[arg-type]
                timeout=timeout_s,
                poll_latency=0.2,
            )
        except TimeExhausted:
            raise ChainUnavailable(f"no receipt for {tx_hash} within {timeout_s} s") from None
        except Exception as exc:  # any RPC or transport failure
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from None
        return _receipt(raw)


def _is_revert(exc: Exception) -> bool:
    """Whether the node refused a call because the EVM reverted it (nodes and test backends
    differ in the exception they raise, not in the message)."""
    return isinstance(exc, ContractLogicError) or "revert" in str(exc).lower()


def _receipt(raw: Any) -> Receipt:
    return Receipt(
        tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
        status=int(raw["status"]),
        block_number=int(raw["blockNumber"]),
        logs=tuple(
            Log(
                address=str(log["address"]).lower(),
                topics=tuple(bytes(topic) for topic in log["topics"]),
                data=bytes(log["data"]),
                index=int(log["logIndex"]),
            )
            for log in raw["logs"]
        ),
    )
