"""Random identifiers are canonical version 4 UUIDs; ordered ones, version 7 UUIDs."""

from __future__ import annotations

import time
import uuid

from gpubridge.ids import ordered_uuid, random_uuid


def test_a_random_uuid_is_a_canonical_version_4_uuid():
    for _ in range(2000):
        text = random_uuid()
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_random_uuids_differ():
    assert len({random_uuid() for _ in range(10_000)}) == 10_000


def test_an_ordered_uuid_is_a_canonical_version_7_uuid_of_the_current_millisecond():
    before = time.time_ns() // 1_000_000
    text = ordered_uuid()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(text)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == text
    assert before <= parsed.int >> 80 <= after


def test_ordered_uuids_differ_and_a_later_millisecond_sorts_after():
    assert len({ordered_uuid() for _ in range(10_000)}) == 10_000
    first = ordered_uuid()
    time.sleep(0.002)
    assert ordered_uuid() > first
