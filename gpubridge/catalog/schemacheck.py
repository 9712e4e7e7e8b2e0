"""Proving that the catalog's input schemas are JSON Schemas, once per schema.

Checking a schema against the 2020-12 meta-schema takes about 2 ms, and a start checks every
service's schema (twice with the starter profile): a tenth of a start-up. A schema is the same
proof every time it is the same document, so a check is remembered by the digest of the
schema, in this process and, when given a file, across starts. The package ships the digests
of its own catalog's schemas (``packaged.checked``, proven by the tests), so even a first
start proves only the schemas an operator wrote; ``write_packaged()`` writes that file anew
after the packaged catalog changes (the tests say when). jsonschema itself (some 60 ms to
import) is loaded by the first schema that needs a proof.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KIND = "json-schema-2020-12"
"""What a digest proves; part of every digest, so that proofs of another kind never match."""

PACKAGED = Path(__file__).with_name("packaged.checked")
"""The digests of the packaged catalog's input schemas, with and without the starter profile."""

MAX_REMEMBERED = 512
"""A file with more digests than this keeps only those of the latest catalog."""


class InvalidSchema(ValueError):
    """A document that is not a valid JSON Schema 2020-12; the message says where and why."""


def check_schema(schema: dict[str, Any]) -> None:
    """Raise ``InvalidSchema`` unless ``schema`` is a valid JSON Schema 2020-12."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidSchema(exc.message) from exc


def schema_digest(schema: dict[str, Any]) -> str:
    """A digest of the schema's content, whatever the order of its keys."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(f"{KIND}\n{text}".encode()).hexdigest()


class SchemaChecks:
    """The input schemas already proven valid, by digest.

    ``path``: a file that keeps them across starts (read now, written by ``save``); None keeps
    them in this object only. A file that cannot be read or written is no error: the schemas
    are checked again next time.
    """

    def __init__(self, path: Path | None = None, *, packaged: bool = True) -> None:
        self.path = path
        self.packaged: set[str] = _read(PACKAGED) if packaged else set()
        """The digests shipped with the package (not written to ``path``)."""
        self.known: set[str] = _read(path) if path is not None else set()
        self.seen: set[str] = set()
        self._changed = False

    def check(self, schema: dict[str, Any]) -> None:
        """Raise ``InvalidSchema`` unless ``schema`` is a valid JSON Schema."""
        digest = schema_digest(schema)
        self.seen.add(digest)
        if digest in self.known or digest in self.packaged:
            return
        check_schema(schema)
        self.known.add(digest)
        self._changed = True

    def save(self) -> None:
        """Write the proven digests to the file, when there is one and it learned some."""
        if self.path is None or not self._changed:
            return
        known = self.known if len(self.known) <= MAX_REMEMBERED else self.seen & self.known
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text("".join(f"{digest}\n" for digest in sorted(known)), "ascii")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.info("cannot keep the catalog's schema checks in %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            return
        self._changed = False


def _read(path: Path) -> set[str]:
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError):
        return set()
    return {line for line in text.split() if len(line) == 64}


def packaged_digests() -> set[str]:
    """The digests of the packaged catalog's input schemas, each proven valid here."""
    from gpubridge.catalog.loader import load_catalog_file

    digests: set[str] = set()
    for starter in (False, True):
        checks = SchemaChecks(packaged=False)
        load_catalog_file(starter=starter, schema_checks=checks)
        digests |= checks.known
    return digests


def write_packaged() -> Path:
    """Write ``packaged.checked`` anew (after the packaged catalog changed)."""
    PACKAGED.write_text("".join(f"{d}\n" for d in sorted(packaged_digests())), "ascii")
    return PACKAGED
