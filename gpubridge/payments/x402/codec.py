"""Payment headers: base64 JSON in and out, and the payment objects they carry.

- ``PAYMENT-SIGNATURE`` (x402 v2): ``{"x402Version": 2, "accepted": {...}, "payload":
  {"authorization": {...}, "signature": "0x..."}, ...}``, or for scheme ``upto`` a Permit2
  authorization of a maximum: ``"payload": {"permit2Authorization": {...}, "signature"}``.
- ``X-PAYMENT`` (x402 v1): ``{"x402Version": 1, "scheme", "network", "payload": {...}}``, or the
  API document's proof of a transfer already on chain: ``{"txHash", "from"}`` (with an optional
  ``signature`` binding it to the request).

Anything that does not decode into one of these shapes is a ``MalformedPayment`` (400); a
well-formed payment that does not pay is rejected later, with a reason (402).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from gpubridge.jsontext import parse_json
from gpubridge.payments.x402.errors import MalformedPayment

PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
X_PAYMENT = "X-PAYMENT"
PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
X_PAYMENT_RESPONSE = "X-PAYMENT-RESPONSE"
MAX_HEADER_CHARS = 16 * 1024
UINT256_MAX = 2**256 - 1

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")
PAYMENT_IDENTIFIER = "payment-identifier"
"""The x402 extension naming a paid request, so that a paid retry gets the first result."""
_PAYMENT_ID = re.compile(r"^[a-zA-Z0-9_-]{16,128}$")


@dataclass(frozen=True)
class Authorization:
    """An EIP-3009 ``TransferWithAuthorization``; addresses lowercase."""

    payer: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes


@dataclass(frozen=True)
class ExactPayment:
    """A signed EIP-3009 authorization (scheme ``exact``), x402 version 1 or 2."""

    version: int
    scheme: str
    network: str
    authorization: Authorization
    signature: bytes
    accepted: dict[str, Any] | None
    """The requirements a v2 client says it pays (None in v1)."""
    document: dict[str, Any]
    """The decoded payload object as the client sent it (forwarded to a facilitator)."""
    identifier: str | None = None
    """The payer's name for this paid request (the ``payment-identifier`` extension, v2)."""

    @property
    def payer(self) -> str:
        return self.authorization.payer


@dataclass(frozen=True)
class TxHashPayment:
    """The API document's proof: a USDC transfer already on chain, claimed by its sender."""

    tx_hash: str
    payer: str
    signature: bytes | None


@dataclass(frozen=True)
class PermitAuthorization:
    """A Permit2 ``PermitWitnessTransferFrom`` with x402's metered witness: ``spender`` (the
    upto proxy) may move up to ``amount`` of ``token`` from ``payer`` to ``to`` before
    ``deadline``, settled by ``facilitator`` only. Addresses lowercase."""

    payer: str
    token: str
    amount: int
    spender: str
    nonce: int
    deadline: int
    to: str
    facilitator: str
    valid_after: int


@dataclass(frozen=True)
class UptoPayment:
    """A signed Permit2 authorization of a maximum (scheme ``upto``, x402 version 2): the
    server settles what the job used, never more than the maximum."""

    network: str
    authorization: PermitAuthorization
    accepted: dict[str, Any]
    document: dict[str, Any]
    identifier: str | None = None
    version: int = 2
    scheme: str = "upto"

    @property
    def payer(self) -> str:
        return self.authorization.payer


Payment = ExactPayment | UptoPayment | TxHashPayment


def encode_json(value: dict[str, Any]) -> str:
    """Base64 of compact JSON, as x402 headers carry it."""
    text = json.dumps(value, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode("ascii")


def decode_json(value: str) -> Any:
    if len(value) > MAX_HEADER_CHARS:
        raise MalformedPayment("the payment header is too large")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
        return parse_json(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise MalformedPayment("the payment header is not base64-encoded JSON") from None


def decode_header(value: str) -> Payment:
    """The payment in a ``PAYMENT-SIGNATURE`` or ``X-PAYMENT`` header value."""
    return from_object(decode_json(value))


def from_object(document: Any) -> Payment:
    """The payment in a decoded payload object (also MCP's ``_meta["x402/payment"]``)."""
    if not isinstance(document, dict):
        raise MalformedPayment("the payment must be a JSON object")
    if "txHash" in document:
        return _tx_hash_payment(document)
    version = document.get("x402Version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise MalformedPayment("x402Version must be 1 or 2")
    payload = _field(document, "payload", dict)
    if version == 2:
        accepted = _field(document, "accepted", dict)
        scheme = _field(accepted, "scheme", str)
        network = _field(accepted, "network", str)
    elif version == 1:
        accepted = None
        scheme = _field(document, "scheme", str)
        network = _field(document, "network", str)
    else:
        raise MalformedPayment(f"x402 version {version} is not supported (1 or 2)")
    if version == 2 and "permit2Authorization" in payload:
        return _upto_payment(document, payload, accepted, network)
    auth = _field(payload, "authorization", dict)
    authorization = Authorization(
        payer=_address(auth, "from"),
        to=_address(auth, "to"),
        value=_uint(auth, "value"),
        valid_after=_uint(auth, "validAfter"),
        valid_before=_uint(auth, "validBefore"),
        nonce=bytes.fromhex(_matching(auth, "nonce", _BYTES32)[2:]),
    )
    signature = bytes.fromhex(_matching(payload, "signature", _HEX)[2:])
    identifier = _payment_identifier(document) if version == 2 else None
    return ExactPayment(
        version, scheme, network, authorization, signature, accepted, document, identifier
    )


def _upto_payment(
    document: dict[str, Any], payload: dict[str, Any], accepted: dict[str, Any], network: str
) -> UptoPayment:
    auth = _field(payload, "permit2Authorization", dict)
    permitted = _field(auth, "permitted", dict)
    witness = _field(auth, "witness", dict)
    _matching(payload, "signature", _HEX)
    authorization = PermitAuthorization(
        payer=_address(auth, "from"),
        token=_address(permitted, "token"),
        amount=_uint(permitted, "amount"),
        spender=_address(auth, "spender"),
        nonce=_uint(auth, "nonce"),
        deadline=_uint(auth, "deadline"),
        to=_address(witness, "to"),
        facilitator=_address(witness, "facilitator"),
        valid_after=_uint(witness, "validAfter"),
    )
    return UptoPayment(network, authorization, accepted, document, _payment_identifier(document))


def payment_identifier_declaration(required: bool = False) -> dict[str, Any]:
    """The 402's ``payment-identifier`` extension, as the SDK's
    ``declare_payment_identifier_extension`` writes it."""
    return {
        "info": {"required": required},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "required": {"type": "boolean"},
                "id": {
                    "type": "string",
                    "minLength": 16,
                    "maxLength": 128,
                    "pattern": "^[a-zA-Z0-9_-]+$",
                },
            },
            "required": ["required"],
        },
    }


def _payment_identifier(document: dict[str, Any]) -> str | None:
    """The ``id`` of the ``payment-identifier`` extension: 16 to 128 letters, digits, ``-`` or
    ``_``, as the x402 SDK defines it; absent (None) when the payment names none."""
    extensions = document.get("extensions")
    if extensions is None:
        return None
    if not isinstance(extensions, dict):
        raise MalformedPayment("the payment's extensions must be an object")
    extension = extensions.get(PAYMENT_IDENTIFIER)
    if extension is None:
        return None
    info = extension.get("info") if isinstance(extension, dict) else None
    if not isinstance(info, dict):
        raise MalformedPayment(f"the payment's {PAYMENT_IDENTIFIER} extension has no info object")
    identifier = info.get("id")
    if identifier is None:
        return None
    if not isinstance(identifier, str) or not _PAYMENT_ID.match(identifier):
        raise MalformedPayment(
            "the payment identifier must be 16 to 128 letters, digits, '-' or '_'"
        )
    return identifier


def _tx_hash_payment(document: dict[str, Any]) -> TxHashPayment:
    unknown = set(document) - {"txHash", "from", "signature"}
    if unknown:
        raise MalformedPayment(f"unknown fields in the payment: {', '.join(sorted(unknown))}")
    signature = document.get("signature")
    return TxHashPayment(
        tx_hash=_matching(document, "txHash", _BYTES32).lower(),
        payer=_address(document, "from"),
        signature=(
            bytes.fromhex(_matching(document, "signature", _HEX)[2:])
            if signature is not None
            else None
        ),
    )


def _field(document: dict[str, Any], name: str, kind: type) -> Any:
    value = document.get(name)
    if not isinstance(value, kind):
        raise MalformedPayment(f"the payment's {name} is missing or not a {kind.__name__}")
    return value


def _matching(document: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not pattern.match(value):
        raise MalformedPayment(f"the payment's {name} is missing or not valid hex")
    return value


def _address(document: dict[str, Any], name: str) -> str:
    return _matching(document, name, _ADDRESS).lower()


def _uint(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    if isinstance(value, str) and value.isdigit() and len(value) <= 78:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise MalformedPayment(f"the payment's {name} must be a non-negative integer")
    if not 0 <= number <= UINT256_MAX:
        raise MalformedPayment(f"the payment's {name} is out of range")
    return number
