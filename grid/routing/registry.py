"""Policies by name, and user policies by `package.module:Class`."""

from __future__ import annotations

import ast
import inspect
import random
import sys
from pathlib import Path

from grid.errors import GridInputError
from grid.plugins import import_user_class
from grid.routing import cache_policies, policies

POLICIES: dict[str, type] = {
    cls.name: cls
    for cls in (
        policies.Nearest,
        policies.RoundRobin,
        policies.Random,
        policies.Weighted,
        policies.LeastOutstanding,
        policies.PowerOfTwoChoices,
        policies.LatencyAware,
        policies.Hedged,
        policies.SloSpillover,
        policies.CostAware,
        policies.CarbonAware,
        cache_policies.PrefixAware,
        cache_policies.KvAware,
        cache_policies.LatencyAwareNoCache,
    )
}


def policy_summary(cls: type) -> str:
    """The first line of a policy's docstring. A class compiled with mypyc (`make native`) keeps no
    docstring, so then it is read from the module's source, which the compiled build keeps beside it."""
    doc = cls.__doc__
    if not doc:
        path = Path(getattr(sys.modules.get(cls.__module__), "__file__", None) or "")
        source = path.with_name(path.name.split(".")[0] + ".py")
        if source.is_file():
            for node in ast.parse(source.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
                    doc = ast.get_docstring(node)
    return (doc or "").strip().split("\n")[0]


def policy_class(spec: str) -> type:
    """A registered name, or `module:Class` importable on the Python path."""
    if spec in POLICIES:
        return POLICIES[spec]
    if ":" not in spec:
        raise GridInputError(
            f"unknown policy {spec!r}; known: {', '.join(POLICIES)} (or a class of yours as package.module:Class)"
        )
    cls = import_user_class(spec, "policy")
    class_name = cls.__name__
    if not callable(getattr(cls, "choose", None)):
        raise GridInputError(f"policy {spec!r}: {class_name} has no choose(request, candidates, view) method")
    if len(inspect.signature(cls.choose).parameters) < 4 and not _takes_varargs(cls.choose):
        raise GridInputError(
            f"policy {spec!r}: {class_name}.choose must take (self, request, candidates, view); the candidates "
            "(zones up, reachable and not tried yet, nearest first) are passed in, not read from view.candidates"
        )
    return cls


def _takes_varargs(function) -> bool:
    return any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(function).parameters.values())


def make_policy(spec: str, seed: int):
    """Instantiate a policy with its own seeded RNG (`rng=` if its constructor takes it)."""
    cls = policy_class(spec)
    rng = random.Random(seed)
    try:
        takes_rng = "rng" in inspect.signature(cls).parameters
        policy = cls(rng=rng) if takes_rng else cls()
    except Exception as exc:
        raise GridInputError(f"policy {spec!r}: constructing {cls.__name__} failed: {exc!r}") from None
    if not hasattr(policy, "name") or not isinstance(getattr(policy, "name", None), str):
        policy.name = spec
    return policy
