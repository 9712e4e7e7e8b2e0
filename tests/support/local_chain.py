"""A local EVM chain in the test process (eth-tester on py-evm) with a USDC-like EIP-3009 token
and a sanctions oracle, both compiled from ``tests/support/chain/`` (see ``compile.js``), and,
from genesis, Uniswap's Permit2 and x402's upto Permit2 proxy at the addresses the x402 SDK uses.

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
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import (
    generate_genesis_state_for_keys,
    get_default_account_keys,
)
from eth_utils import to_canonical_address
from web3 import AsyncWeb3, EthereumTesterProvider, Web3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from gpubridge.payments.x402.chain import Chain

CONTRACTS = Path(__file__).parent / "chain" / "contracts.json"
# eth-tester's funded accounts use the private keys 1, 2, 3, ...
DEPLOYER_KEY = "0x" + "00" * 31 + "01"
OPERATOR_KEY = "0x" + "00" * 31 + "02"
# Where the x402 SDK expects them (x402.mechanisms.evm.constants).
PERMIT2_ADDRESS = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
UPTO_PROXY_ADDRESS = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"
MAX_UINT256 = 2**256 - 1
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


def genesis_state() -> dict[bytes, dict[str, Any]]:
    """eth-tester's ten funded accounts, plus Permit2 and the upto proxy as runtime code."""
    state: dict[bytes, dict[str, Any]] = generate_genesis_state_for_keys(
        get_default_account_keys(10)
    )
    for name, address in (
        ("Permit2", PERMIT2_ADDRESS),
        ("X402UptoPermit2Proxy", UPTO_PROXY_ADDRESS),
    ):
        runtime = bytes.fromhex(compiled()[name]["runtime"][2:])
        state[to_canonical_address(address)] = {
            "balance": 0,
            "nonce": 1,
            "code": runtime,
            "storage": {},
        }
    return state


class LocalChain:
    """One chain with the token (``usdc``), a second token (``other``), the oracle, Permit2
    (``permit2``) and the upto proxy (``upto_proxy``)."""

    def __init__(self) -> None:
        self.tester = EthereumTester(PyEVMBackend(genesis_state=genesis_state()))
        self.provider = AsyncEthereumTesterProvider()
        self.provider.ethereum_tester = self.tester
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.chain_id = int(self.w3.eth.chain_id)
        self.deployer = Account.from_key(DEPLOYER_KEY)
        self.operator = Account.from_key(OPERATOR_KEY)
        self.recipient = Account.create().address
        self.usdc = self.deploy("TestUSDC", "USD Coin", "2")
        self.other = self.deploy("TestUSDC", "USD Coin", "2")
        self.oracle = self.deploy("SanctionsOracle")
        self.permit2 = self.at("Permit2", PERMIT2_ADDRESS)
        self.upto_proxy = self.at("X402UptoPermit2Proxy", UPTO_PROXY_ADDRESS)

    # -- contracts and accounts ---------------------------------------------------------
    def deploy(self, name: str, *args: Any) -> Any:
        spec = compiled()[name]
        factory = self.w3.eth.contract(abi=spec["abi"], bytecode=spec["bytecode"])
        tx = factory.constructor(*args).transact({"from": self.deployer.address})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=spec["abi"])

    def at(self, name: str, address: str) -> Any:
        return self.w3.eth.contract(address=address, abi=compiled()[name]["abi"])

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

    def approve_permit2(
        self, payer: LocalAccount, amount: int = MAX_UINT256, *, token: Any = None
    ) -> None:
        """Let Permit2 move ``payer``'s tokens (``payer`` needs ETH: ``new_payer(eth=True)``)."""
        contract = token or self.usdc
        tx = contract.functions.approve(PERMIT2_ADDRESS, amount).build_transaction(
            {
                "from": payer.address,
                "nonce": self.w3.eth.get_transaction_count(payer.address),
                "chainId": self.chain_id,
            }
        )
        sent = self.w3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(sent)
        assert receipt["status"] == 1, receipt

    def permit2_nonce_used(self, owner: str, nonce: int) -> bool:
        """Whether Permit2 has spent ``owner``'s unordered signature nonce."""
        bitmap = int(self.permit2.functions.nonceBitmap(owner, nonce >> 8).call())
        return bool(bitmap >> (nonce & 0xFF) & 1)

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
