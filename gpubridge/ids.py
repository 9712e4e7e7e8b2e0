"""Random identifiers, and time-ordered ones for keys that are indexed but never shown."""

from __future__ import annotations

import os
import time


def random_uuid() -> str:
    """A random (version 4) UUID in its canonical text form: what ``str(uuid.uuid4())`` gives,
    at under half its cost (a paid request makes several: its job, its ledger postings)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    return _text(raw)


def ordered_uuid() -> str:
    """A time-ordered (version 7, RFC 9562) UUID: the Unix time in milliseconds, then 74
    random bits. Keys made of these are inserted at the end of their index, where a batch of
    inserts shares its pages, rather than at a random place that costs each a page of its own.
    Not for ids a client holds as a secret (a job's): it tells when it was made."""
    milliseconds = time.time_ns() // 1_000_000 % (1 << 48)
    raw = bytearray(milliseconds.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    return _text(raw)


def _text(raw: bytearray) -> str:
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
