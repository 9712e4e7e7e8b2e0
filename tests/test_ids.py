"""Random identifiers are canonical version 4 UUIDs."""

from __future__ import annotations

import uuid

from gpubridge.ids import random_uuid


def test_a_random_uuid_is_a_canonical_version_4_uuid():
    for _ in range(2000):
        text = random_uuid()
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_random_uuids_differ():
    assert len({random_uuid() for _ in range(10_000)}) == 10_000
