"""A job of the workflow (:class:`Job`) and the canonical JSON its parameters are written in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def as_json(obj: Any) -> str:
    """Parameters as one canonical JSON string, as ``tmf ... --cfg`` reads them (and Snakemake compares them)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Job:
    """One job of the workflow. ``params`` hold the values its rule passes on (config sections as JSON)."""

    rule: str
    wildcards: dict[str, str]
    output: dict[str, Any]
    input: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> dict[str, Any]:
        """The configuration the job's command reads (``--cfg``)."""
        return json.loads(self.params["cfg"])


def key(wildcards: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in wildcards.items()))


def files(value: Any) -> list[str]:
    """Every path of a (nested) dict or list of paths."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in files(v)]
    if isinstance(value, list):
        return [p for v in value for p in files(v)]
    return [value]
