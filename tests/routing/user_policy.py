"""Policies a user writes in their own module (loaded as tests.routing.user_policy:Class)."""

from __future__ import annotations


class FarthestFirst:
    """A deliberately odd user policy: the last (farthest) reachable zone. No base class, no rng."""

    name = "farthest_first"

    def choose(self, request, candidates, view) -> int:
        return candidates[-1]


class Raising:
    """Raises on its 10th decision."""

    def __init__(self) -> None:
        self.calls = 0

    def choose(self, request, candidates, view) -> int:
        self.calls += 1
        if self.calls >= 10:
            raise RuntimeError("boom from a user policy")
        return candidates[0]


class BadIndex:
    """Returns a zone id instead of an index."""

    def choose(self, request, candidates, view) -> int:
        return view.zones[candidates[0]].zone_id
