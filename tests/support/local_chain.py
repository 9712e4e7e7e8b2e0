"""A local EVM chain in the test process (eth-tester on py-evm) with a USDC-like EIP-3009 token
and a sanctions oracle, both compiled from ``tests/support/chain/`` (see ``compile.js``).

Payers sign with ``eth-account``'s own EIP-712 and EIP-191 code, independently of gpubridge's.
"""

from __future__ import annotations

import json
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3, EthereumTesterProvider, Web3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from gpubridge.payments.x402.chain import Chain

CONTRACTS = Path(__file__).parent / "chain" / "contracts.json"
# eth-tester's funded accounts use the private keys 1, 2, 3, ...
DEPLOYER_KEY = "0x" + "00" * 31 + "01"
OPERATOR_KEY = "0x" + "00" * 31 + "02"
TRANSFER_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ],
}


@cache
def compiled() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CONTRACTS.read_text())
    return data


class LocalChain:
    """One chain with the token (``usdc``), a second token (``other``) and the oracle."""

    def __init__(self) -> None:
        self.provider = AsyncEthereumTesterProvider()
        self.tester = self.provider.ethereum_tester
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.chain_id = int(self.w3.eth.chain_id)
        self.deployer = Account.from_key(DEPLOYER_KEY)
        self.operator = Account.from_key(OPERATOR_KEY)
        self.recipient = Account.create().address
        self.usdc = self.deploy("TestUSDC", "USD Coin", "2")
        self.other = self.deploy("TestUSDC", "USD Coin", "2")
        self.oracle = self.deploy("SanctionsOracle")

    # -- contracts and accounts ---------------------------------------------------------
    def deploy(self, name: str, *args: Any) -> Any:
        spec = compiled()[name]
        factory = self.w3.eth.contract(abi=spec["abi"], bytecode=spec["bytecode"])
        tx = factory.constructor(*args).transact({"from": self.deployer.address})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=spec["abi"])

    def gateway_chain(self) -> Chain:
        """A gpubridge chain client on this chain."""
        return Chain(AsyncWeb3(self.provider))

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """x402 settings for this chain (settlement with the operator's key)."""
        values: dict[str, Any] = {
            "x402_chain_id": self.chain_id,
            "x402_network": f"eip155:{self.chain_id}",
            "x402_network_v1": "local",
            "x402_asset": self.usdc.address,
            "x402_pay_to": self.recipient,
            "x402_settlement_key": OPERATOR_KEY,
            "x402_rpc_url": "http://127.0.0.1:9",  # never used: the test chain is injected
        }
        values.update(overrides)
        return values

    def new_payer(self, usdc: int = 0, *, eth: bool = False, token: Any = None) -> LocalAccount:
        payer: LocalAccount = Account.create()
        if usdc:
            self.mint(payer.address, usdc, token=token)
        if eth:
            self.w3.eth.send_transaction(
                {"from": self.deployer.address, "to": payer.address, "value": 10**18}
            )
        return payer

    def mint(self, address: str, amount: int, *, token: Any = None) -> None:
        contract = token or self.usdc
        contract.functions.mint(address, amount).transact({"from": self.deployer.address})

    def balance(self, address: str, *, token: Any = None) -> int:
        return int((token or self.usdc).functions.balanceOf(address).call())

    def sanction(self, address: str) -> None:
        self.oracle.functions.addToSanctionsList([address]).transact(
            {"from": self.deployer.address}
        )

    def blacklist(self, address: str) -> None:
        """Make the token revert transfers from ``address`` (views still answer)."""
        self.usdc.functions.blacklist(address, True).transact({"from": self.deployer.address})

    def mine(self, blocks: int = 1) -> None:
        self.tester.mine_blocks(blocks)

    def latest_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def transfer_count(self, recipient: str) -> int:
        """How many token transfers to ``recipient`` the chain holds."""
        events = self.usdc.events.Transfer.get_logs(
            from_block=0, argument_filters={"to": recipient}
        )
        return len(events)

    # -- payments ------------------------------------------------------------------------
    def authorization(
        self,
        payer: LocalAccount,
        value: int,
        *,
        to: str | None = None,
        valid_after: int = 0,
        valid_before: int | None = None,
        nonce: bytes | None = None,
        token: str | None = None,
        chain_id: int | None = None,
    ) -> dict[str, Any]:
        """A signed EIP-3009 payload in the SDK's shape: ``{"authorization", "signature"}``."""
        message = {
            "from": payer.address,
            "to": to or self.recipient,
            "value": value,
            "validAfter": valid_after,
            "validBefore": valid_before if valid_before is not None else int(time.time()) + 300,
            "nonce": nonce or os.urandom(32),
        }
        typed = {
            "types": TRANSFER_TYPES,
            "primaryType": "TransferWithAuthorization",
            "domain": {
                "name": "USD Coin",
                "version": "2",
                "chainId": chain_id or self.chain_id,
                "verifyingContract": token or self.usdc.address,
            },
            "message": message,
        }
        signed = payer.sign_message(encode_typed_data(full_message=typed))
        return {
            "authorization": {
                "from": payer.address,
                "to": message["to"],
                "value": str(value),
                "validAfter": str(valid_after),
                "validBefore": str(message["validBefore"]),
                "nonce": "0x" + message["nonce"].hex(),
            },
            "signature": "0x" + bytes(signed.signature).hex(),
        }

    def settle_directly(self, payload: dict[str, Any]) -> None:
        """Use an authorization on chain ourselves (its nonce is then used)."""
        auth = payload["authorization"]
        signature = bytes.fromhex(payload["signature"][2:])
        self.usdc.functions.transferWithAuthorization(
            auth["from"],
            auth["to"],
            int(auth["value"]),
            int(auth["validAfter"]),
            int(auth["validBefore"]),
            bytes.fromhex(auth["nonce"][2:]),
            signature[64],
            signature[:32],
            signature[32:64],
        ).transact({"from": self.deployer.address})

    def transfer(self, payer: LocalAccount, to: str, amount: int, *, token: Any = None) -> str:
        """Send a plain token transfer signed by ``payer`` (who needs ETH); its tx hash."""
        contract = token or self.usdc
        tx = contract.functions.transfer(to, amount).build_transaction(
            {
                "from": payer.address,
                "nonce": self.w3.eth.get_transaction_count(payer.address),
                "chainId": self.chain_id,
            }
        )
        signed = payer.sign_transaction(tx)
        sent = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        return "0x" + bytes(sent).hex()


def personal_sign(account: LocalAccount, message: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=message)).signature).hex()
