"""Parameters: one JSON schema (``tmf/schema/params.schema.yaml``) holds every parameter with its default.

The workflow resolves its configuration with :func:`workflow_config` (the base a configuration overlays, the
schema's defaults, ``pretrain.methods: [all]``); ``tmf`` commands run by hand read a params YAML with
:func:`load_params` (over the schema's defaults) or their section as ``--cfg`` JSON (:func:`section_arg`).
``workflow/schemas/params.schema.yaml`` is a link to the schema. Unknown names get a "did you mean" hint
(:func:`unknown_name`).
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml.safe_load(resources.files("tmf").joinpath("schema/params.schema.yaml").read_text())


def schema() -> dict:
    """The parameter schema (a copy: callers may change it; this module reads the cached one, which nothing
    here changes: the validator copies the defaults it fills in)."""
    return copy.deepcopy(_schema())


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


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'simclr'?)`` for the valid name closest to ``name`` (difflib), or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(param: str, name: str, choices, what: str = "name") -> ParamsError:
    """The one-line error for a name that is not among ``choices``, naming the parameter (or option)."""
    return ParamsError(f"{param}: unknown {what} {name!r}{did_you_mean(name, choices)}; "
                       f"expected one of {list(choices)}")


def check_name(param: str, name: str, choices, what: str = "name") -> str:
    """``name`` if it is one of ``choices``, else :func:`unknown_name`'s error."""
    if name not in choices:
        raise unknown_name(param, name, choices, what)
    return name


def _message(e: jsonschema.ValidationError) -> str:
    """jsonschema's message, with a "did you mean" for a misspelt choice or key."""
    if e.validator == "enum":
        return e.message + did_you_mean(e.instance, e.validator_value)
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        known = e.schema.get("properties", {})
        hints = [f"{k!r}{did_you_mean(k, known)}" for k in e.instance if k not in known]
        return f"unknown parameter(s) {', '.join(hints)}; expected some of {list(known)}"
    return e.message


def validate(params: dict[str, Any], source: str = "parameters") -> dict[str, Any]:
    """Validate ``params`` against the schema and return a copy with every default filled in."""
    out = copy.deepcopy(params) if params else {}
    errors = sorted(_Validator(_schema()).iter_errors(out), key=lambda e: list(e.path))
    if errors:
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.path) or "(top level)"
            lines.append(f"  {where}: {_message(e)}")
        raise ParamsError(f"invalid {source}:\n" + "\n".join(lines))
    return out


def method_names() -> list[str]:
    """The registered pretraining methods (one per ``pretrain.method_params`` key, so no torch is needed; the
    registry ``tmf.ssl.methods.METHODS`` has the same names)."""
    return list(_schema()["properties"]["pretrain"]["properties"]["method_params"]["properties"])


def resolve_methods(params: dict[str, Any]) -> list[str]:
    """``pretrain.methods`` with ``all`` expanded to every registered RGB method (the multi-modal ones need
    elevation: name them); an unknown name is an error naming the parameter (and the closest method)."""
    from tmf.modalities import is_multimodal

    registry = method_names()
    methods = params["pretrain"]["methods"]
    if "all" in methods:
        return [m for m in registry if not is_multimodal(m)]
    for m in methods:
        check_name("pretrain.methods", m, [*registry, "all"], "method")
    return list(methods)


def overlay(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``, section by section (as Snakemake merges config files; lists are replaced)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def workflow_config(given: dict[str, Any], embedded: str | Path) -> dict[str, Any]:
    """The configuration a workflow run uses.

    ``given`` is what Snakemake merged from the ``--configfile`` files and ``--config`` values (the Snakefile has
    no ``configfile:`` directive). Its top-level ``base`` names what it overlays: ``embedded`` (the default) the
    file ``embedded`` (params/default.yaml: the synthetic data, minutes on a laptop); ``study`` nothing, so that
    every parameter it does not set keeps the schema's default, the real study's (params/minifrance.yaml). The
    result is validated, every default filled in, and ``pretrain.methods: [all]`` expanded.
    """
    given = coerce_strings(dict(given))
    if given.get("base", _schema()["properties"]["base"]["default"]) == "embedded":
        path = Path(embedded)
        try:
            start = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ParamsError(f"the embedded default {path} is missing (base: embedded overlays it)") from None
        if start.get("base", "embedded") != "embedded":
            raise ParamsError(f"{path}: the embedded default cannot itself set base: {start['base']}")
        given = overlay(start, given)
    params = validate(given, source="workflow configuration")
    params["pretrain"]["methods"] = resolve_methods(params)
    return params


def coerce_strings(value: Any, sub: dict | None = None) -> Any:
    """Turn strings into the numbers and booleans the schema expects.

    ``snakemake --config section='{key: 1}'`` parses nested values with YAML's BaseLoader, which keeps every scalar
    a string; without this, ``--config report='{dpi: 150}'`` would fail validation. Strings that do not parse
    as the expected type are left alone for validation to report.
    """
    sub = _schema() if sub is None else sub
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
    """Read a params YAML (or nothing: all defaults) and validate it: the file over the schema's defaults (what
    ``base`` overlays is the workflow's business, :func:`workflow_config`)."""
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
