"""A user's class named `package.module:Class` (a routing policy, an autoscaler), imported with
errors that say what went wrong in one line."""

from __future__ import annotations

import importlib
import inspect

from grid.errors import GridInputError


def import_user_class(spec: str, what: str) -> type:
    """The class `spec` names; `what` ("policy", "autoscaler") starts every error."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure of user code is a user error
        raise GridInputError(f"{what} {spec!r}: cannot import module {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None or not inspect.isclass(cls):
        raise GridInputError(f"{what} {spec!r}: module {module_name!r} has no class {class_name!r}")
    return cls
