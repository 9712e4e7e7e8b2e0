"""Loading and validating catalog.yaml; a broken catalog refuses to start."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpubridge.catalog.models import CatalogFile
from gpubridge.errors import ConfigurationError


def packaged_catalog_text() -> str:
    return resources.files("gpubridge.catalog").joinpath("catalog.yaml").read_text("utf-8")


def load_catalog_file(path: Path | None = None) -> CatalogFile:
    """Parse and validate a catalog file (the packaged one when ``path`` is None)."""
    where = str(path) if path else "packaged catalog.yaml"
    try:
        text = path.read_text("utf-8") if path else packaged_catalog_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read catalog {where}: {exc}") from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"catalog {where} is not valid YAML: {exc}") from exc
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
