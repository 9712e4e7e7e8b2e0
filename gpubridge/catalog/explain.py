"""Input that breaks a service's JSON Schema, said so that a person knows what to send instead.

jsonschema's own messages describe the schema (``{...} is not valid under any of the given
schemas``, ``Additional properties are not allowed``); these name the fields: the choices of an
``anyOf``/``oneOf``, the closest known field to an unknown one, the closest allowed value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpubridge.suggest import did_you_mean

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

ROOT = "(input)"
"""The path of a violation of the input object as a whole."""

_ARTICLES = {
    "array": "an array",
    "object": "an object",
    "integer": "an integer",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def violations(validator: Validator, instance: Any) -> list[dict[str, Any]]:
    """What ``validator`` refuses in ``instance``: one ``{"path", "message"}`` per problem, in
    path order; an unknown field also carries ``field``, and any problem that a close name may
    fix carries ``suggestion``."""
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]
    )
    found: list[dict[str, Any]] = []
    missing_reported: set[str] = set()
    for error in errors:
        if error.validator == "required":
            # jsonschema says each missing field apart; all of them are said at the first.
            if path_of(error) in missing_reported:
                continue
            missing_reported.add(path_of(error))
        found.extend(_explain(validator, error))
    return found


def summary(found: Sequence[dict[str, Any]]) -> str:
    """The violations as one line: ``path: message; ...`` (no path for the whole input)."""
    return "; ".join(
        v["message"] if v["path"] == ROOT else f"{v['path']}: {v['message']}" for v in found
    )


def path_of(error: ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or ROOT


def _explain(validator: Validator, error: ValidationError) -> list[dict[str, Any]]:
    path = path_of(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_fields(error, path)
    if error.validator in ("anyOf", "oneOf"):
        return [_alternatives(validator, error)]
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [f for f in error.validator_value if f not in _keys(error.instance)]
        if missing:
            return [{"path": path, "message": f"missing required field `{f}`"} for f in missing]
    if error.validator == "enum" and isinstance(error.instance, str):
        allowed = [v for v in _listed(error.validator_value) if isinstance(v, str)]
        hint, suggestion = did_you_mean(error.instance, allowed)
        if suggestion is not None:
            message = f"{error.instance!r} is not one of {allowed}{hint}"
            return [{"path": path, "message": message, "suggestion": suggestion}]
    return [{"path": path, "message": error.message}]


def _keys(instance: object) -> list[str]:
    """The fields of an object, in the order they were sent."""
    return [str(k) for k in instance] if isinstance(instance, dict) else []


def _listed(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _unknown_fields(error: ValidationError, path: str) -> list[dict[str, Any]]:
    """One violation per field the object's schema does not know, offering the closest."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    known = [str(k) for k in schema.get("properties", {})]
    patterns = schema.get("patternProperties", {})
    extras = [
        name
        for name in _keys(error.instance)
        if name not in known and not any(re.search(p, name) for p in patterns)
    ]
    if not extras:
        return [{"path": path, "message": error.message}]
    found = []
    for name in extras:
        hint, suggestion = did_you_mean(name, known)
        if suggestion is None and known:
            hint = " (known fields: " + ", ".join(f"`{k}`" for k in known) + ")"
        violation: dict[str, Any] = {
            "path": path,
            "message": f"unknown field `{name}`{hint}",
            "field": name,
        }
        if suggestion is not None:
            violation["suggestion"] = suggestion
        found.append(violation)
    return found


def _alternatives(validator: Validator, error: ValidationError) -> dict[str, Any]:
    """An ``anyOf``/``oneOf`` refusal: the choices it offers, or what is wrong with the one the
    value was evidently meant to be."""
    path = path_of(error)
    choices = [c for c in _listed(error.validator_value) if isinstance(c, dict)]
    needs = [c.get("required") for c in choices]
    several = error.validator == "oneOf" and not error.context  # more than one choice fits
    if needs and all(isinstance(n, list) and n for n in needs):
        options = " or ".join(" and ".join(f"`{f}`" for f in n) for n in needs if n)
        return {"path": path, "message": f"send {'only one of ' if several else ''}{options}"}
    if several:
        return {"path": path, "message": "fits more than one of the allowed forms; send one"}
    types = [t for t in (c.get("type") for c in choices) if isinstance(t, str)]
    instance: Any = error.instance
    fits_none = not any(validator.is_type(instance, t) for t in types)
    if types and len(types) == len(choices) and fits_none:
        kinds = " or ".join(_ARTICLES.get(t, t) for t in types)
        return {"path": path, "message": f"must be {kinds}"}
    # The value has the type of one choice: what that choice refuses is the problem.
    meant = [e for e in error.context or () if e.validator != "type"]
    if meant:
        from jsonschema.exceptions import best_match  # loaded by the validator already

        closest = best_match(meant)
        if closest is not None:
            return _explain(validator, closest)[0]
    return {"path": path, "message": "matches none of the allowed forms of this field"}
