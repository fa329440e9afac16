"""The routing interface: a policy is one decision on a GridView.

`choose(request, candidates, view) -> zone index`, one of `candidates`: the zones the request may go
to (up, reachable and not tried yet for it, nearest first), passed in by the dispatch core as Ray
Serve's `choose_replicas(candidate_replicas, pending_request)` is. It does no I/O, reads no clock and
owns no threads; retries, timeouts and health belong to the dispatch core (`grid.dispatch`).
`observe(request)` is called when a request ends (its `status`, `zone`, timestamps filled in) for
policies that learn. Randomness comes from `self.rng`,
seeded by the driver, so runs are reproducible. A policy that reads the zones' prefix-cache summaries
(`ZoneView.cached_units`) sets `reads_cached_units`; drivers may leave them out of the view otherwise.
"""

from __future__ import annotations

import random
from typing import ClassVar

from mypy_extensions import mypyc_attr

from grid.routing.view import GridView
from grid.serving.request import Request


@mypyc_attr(allow_interpreted_subclasses=True)  # when compiled (`make native`): user policies subclass it
class Policy:
    """Base class (optional: any object with `choose` works)."""

    name: ClassVar[str] = "policy"
    reads_cached_units: ClassVar[bool] = False  # taking a zone's cache summary costs a copy per report when reports age

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random(0)

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        raise NotImplementedError

    def observe(self, request: Request) -> None:
        """Feedback when a request ends; the default ignores it."""
