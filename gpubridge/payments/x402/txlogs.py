"""Reading ERC-20 ``Transfer`` and EIP-3009 ``AuthorizationUsed`` events out of a receipt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpubridge.payments.x402.chain import Log, Receipt

TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")
"""keccak256("Transfer(address,address,uint256)")"""
AUTHORIZATION_USED_TOPIC = bytes.fromhex(
    "98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5"
)
"""keccak256("AuthorizationUsed(address,bytes32)")"""


@dataclass(frozen=True)
class Transfer:
    sender: str
    recipient: str
    value: int
    log_index: int = 0


def _topic_address(topic: bytes) -> str:
    return "0x" + topic[-20:].hex()


def transfer_of(log: Log, token: str) -> Transfer | None:
    """The ``Transfer`` this log records, when it is one of the ``token`` contract."""
    if log.address != token.lower() or len(log.topics) != 3 or len(log.data) != 32:
        return None
    if log.topics[0] != TRANSFER_TOPIC:
        return None
    return Transfer(
        sender=_topic_address(log.topics[1]),
        recipient=_topic_address(log.topics[2]),
        value=int.from_bytes(log.data, "big"),
        log_index=log.index,
    )


def transfers_in(receipt: Receipt, token: str) -> list[Transfer]:
    """The ``Transfer`` events the ``token`` contract emitted in this transaction."""
    return [t for t in (transfer_of(log, token) for log in receipt.logs) if t is not None]


def used_authorizations(receipt: Receipt, token: str) -> bool:
    """Whether the transaction settled an EIP-3009 authorization of ``token``."""
    return any(
        log.address == token.lower() and log.topics and log.topics[0] == AUTHORIZATION_USED_TOPIC
        for log in receipt.logs
    )
