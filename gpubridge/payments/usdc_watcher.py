"""The USDC top-up watcher: reads the configured USDC contract's ``Transfer`` logs to the
recipient, block range by block range, and pays the open invoices they match.

The last block scanned is kept in ``chain_cursors`` (``usdc-topups``). A pass scans up to the
newest block with the smaller confirmation count; a matching transfer that needs more (5 above
the large amount, as for x402) stops the cursor just before its block, so the next pass reads
it again. Scanning a block twice credits nothing more: an invoice is paid once, a hash once.

While no invoice is open there is nothing to match and the pass asks the chain nothing; the
cursor is then forgotten, and the next pass with an open invoice starts ``scan_blocks`` back
from the head.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gpubridge.payments.x402.config import same_address
from gpubridge.payments.x402.txlogs import TRANSFER_TOPIC, transfer_of

if TYPE_CHECKING:
    from gpubridge.payments.crypto_topups import CryptoTopups

log = logging.getLogger(__name__)

MAX_RANGES_PER_PASS = 10


def _address_topic(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


async def scan_once(topups: CryptoTopups) -> int:
    """Scan the blocks not read yet; how many invoices this pass paid."""
    config = topups.require_config()
    await topups.expire_stale()
    open_amounts = await topups.open_amounts()
    if not open_amounts:
        await topups.save_cursor(None)
        return 0
    chain = await topups.chain()
    latest = await chain.block_number()
    head = latest - min(config.confirmations, config.confirmations_large) + 1
    cursor = await topups.cursor()
    if cursor is None:
        cursor = max(-1, head - topups.scan_blocks)
    paid = 0
    topics: list[bytes | None] = [TRANSFER_TOPIC, None, _address_topic(config.pay_to)]
    for _ in range(MAX_RANGES_PER_PASS):
        start = cursor + 1
        if start > head:
            break
        end = min(head, start + topups.scan_blocks - 1)
        logs = await chain.logs(config.asset, topics, start, end)
        stop = end
        timestamps: dict[int, int] = {}
        for mined in logs:
            if mined.block_number > stop:
                break
            transfer = transfer_of(mined.log, config.asset)
            if transfer is None or not same_address(transfer.recipient, config.pay_to):
                continue
            if transfer.value not in open_amounts:
                # Common: x402 payments arrive at the same recipient.
                log.debug(
                    "usdc transfer %s of %d units matches no open invoice",
                    mined.tx_hash,
                    transfer.value,
                )
                continue
            needed = config.confirmations_for(transfer.value)
            if latest - mined.block_number + 1 < needed:
                stop = mined.block_number - 1  # read this block again next pass
                break
            if mined.block_number not in timestamps:
                timestamps[mined.block_number] = await chain.block_timestamp(mined.block_number)
            outcome, _ = await topups.apply_transfer(
                mined.tx_hash, transfer, timestamps[mined.block_number]
            )
            if outcome == "credited":
                paid += 1
                open_amounts.discard(transfer.value)
            else:
                log.info("usdc transfer %s: %s", mined.tx_hash, outcome)
        await topups.save_cursor(stop)
        cursor = stop
        if stop < end:
            break
    return paid
