"""`--vary`: parsing a varied scenario field and its values (`PATH=A..B:STEP` or `PATH=A,B,C`), and
checking that every varied path names a field of the scenario."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from grid.errors import GridInputError
from grid.scenario import get_path


@dataclass(frozen=True)
class Variation:
    path: str
    values: tuple[Any, ...]


def _number(text: str, what: str, arg: str) -> int | float:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise GridInputError(f"--vary {arg}: the {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise GridInputError(f"--vary {arg}: the {what} {text!r} is not a finite number")
    return value


def parse_vary(text: str) -> Variation:
    """`PATH=A..B:STEP` (inclusive range; STEP defaults to 1) or `PATH=A,B,C` (values read as YAML)."""
    path, sep, spec = text.partition("=")
    path, spec = path.strip(), spec.strip()
    if not sep or not path or not spec:
        raise GridInputError(f"--vary {text!r}: expected FIELD.PATH=A..B:STEP or FIELD.PATH=A,B,C")
    if ".." in spec:
        lo_text, _, rest = spec.partition("..")
        hi_text, _, step_text = rest.partition(":")
        lo, hi = _number(lo_text, "start", text), _number(hi_text, "end", text)
        step = _number(step_text, "step", text) if step_text.strip() else 1
        if step <= 0:
            raise GridInputError(f"--vary {text}: the step must be > 0 (got {step})")
        if hi < lo:
            raise GridInputError(f"--vary {text}: the range {spec} is empty (start {lo} > end {hi})")
        count = math.floor((hi - lo) / step + 1e-9) + 1
        values: list[Any] = [lo + i * step for i in range(count)]
        if not all(isinstance(v, int) for v in (lo, hi, step)):
            values = [round(float(v), 12) for v in values]
    else:
        items = [item.strip() for item in spec.split(",")]
        if any(not item for item in items):
            raise GridInputError(f"--vary {text}: an empty value in the list {spec!r}")
        try:
            values = [yaml.safe_load(item) for item in items]
        except yaml.YAMLError:
            raise GridInputError(f"--vary {text}: cannot read the values {spec!r}") from None
    if len(set(map(repr, values))) != len(values):
        raise GridInputError(f"--vary {text}: a value repeats")
    return Variation(path, tuple(values))


def check_paths(raw: dict[str, Any], scenario, variations: list[Variation]) -> None:
    """Every varied path must name a field of the scenario: one the files set, or one with a
    default (e.g. `zones.paris-1.max_queue`). Errors reuse `get_path`'s message, which lists what
    exists at the level where the path goes wrong."""
    seen: set[str] = set()
    for v in variations:
        if v.path in seen:
            raise GridInputError(f"--vary {v.path}: varied twice")
        seen.add(v.path)
        try:
            get_path(raw, v.path)
        except GridInputError as exc:
            if not _model_has(scenario, v.path):
                raise GridInputError(f"--vary {exc}") from None


def _model_has(node: Any, dotted: str) -> bool:
    for key in dotted.split("."):
        if isinstance(node, dict):
            if key not in node:
                return False
            node = node[key]
        elif isinstance(node, BaseModel) and key in type(node).model_fields:
            node = getattr(node, key)
        else:
            return False
    return True
