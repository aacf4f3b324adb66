"""Parameters: one JSON schema (``tmf/schema/params.schema.yaml``) holds every parameter with its default.

Snakemake validates the workflow's config against the same file (``workflow/schemas/params.schema.yaml`` is a
link to it); ``tmf`` commands run by hand load a params YAML through :func:`load_params`.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def schema() -> dict:
    return yaml.safe_load(resources.files("tmf").joinpath("schema/params.schema.yaml").read_text())


def _extend_with_default(validator_class):
    """Validator that fills in ``default`` values while validating (the jsonschema FAQ recipe, as Snakemake)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_default(jsonschema.Draft202012Validator)


class ParamsError(ValueError):
    """Invalid parameters; the message names the offending parameter."""


def validate(params: dict[str, Any], source: str = "parameters") -> dict[str, Any]:
    """Validate ``params`` against the schema and return a copy with every default filled in."""
    out = copy.deepcopy(params) if params else {}
    errors = sorted(_Validator(schema()).iter_errors(out), key=lambda e: list(e.path))
    if errors:
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.path) or "(top level)"
            lines.append(f"  {where}: {e.message}")
        raise ParamsError(f"invalid {source}:\n" + "\n".join(lines))
    return out


def coerce_strings(value: Any, sub: dict | None = None) -> Any:
    """Turn strings into the numbers and booleans the schema expects.

    ``snakemake --config section='{key: 1}'`` parses nested values with YAML's BaseLoader, which keeps every scalar
    a string; without this, ``--config report='{dpi: 150}'`` would fail validation. Strings that do not parse
    as the expected type are left alone for validation to report.
    """
    sub = schema() if sub is None else sub
    if isinstance(value, dict):
        props = sub.get("properties", {})
        return {k: coerce_strings(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_strings(v, sub.get("items", {})) for v in value]
    if not isinstance(value, str):
        return value
    types = [sub.get("type")] + [alt.get("type") for alt in sub.get("oneOf", [])]
    if not {"integer", "number", "boolean"} & set(types):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    ok = {"integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
          "number": lambda x: isinstance(x, int | float) and not isinstance(x, bool),
          "boolean": lambda x: isinstance(x, bool)}
    return parsed if any(t in ok and ok[t](parsed) for t in types) else value


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read a params YAML (or nothing: all defaults) and validate it."""
    if path is None:
        return validate({})
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    return validate(data, source=str(path))


def section_arg(value: str | None, params_file: str | None, section: str) -> dict[str, Any]:
    """Resolve a stage's parameters from ``--cfg JSON`` (what the workflow passes) or ``--params FILE``."""
    if value:
        try:
            cfg = json.loads(value)
        except json.JSONDecodeError as e:
            raise ParamsError(f"--cfg for {section}: not valid JSON: {e}") from None
        return validate({section: cfg}, source=f"--cfg ({section})")[section]
    return load_params(params_file)[section]
