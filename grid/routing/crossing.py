"""Why a decision sent a request out of its home region, in a few words a summary can count.

`Crossing(world)(population, explanation)` is "" when the winner is in the population's home region
(its nearest), else one of `REASONS`, read off the explanation's terms: the home region had no
candidate (down, unreachable, pruned), or none with headroom, or a longer cached prefix was elsewhere,
or the policy's rule ignores distance, or a cheaper/cleaner zone met the target, or a zone away was
simply predicted faster.
"""

from __future__ import annotations

from grid.routing.explain import Explanation
from grid.world import World

HOME_MISSING = "home region not a candidate (down or unreachable)"
HOME_FULL = "home region without headroom"
CACHE = "longer cached prefix away"
IGNORES_DISTANCE = "the policy ignores distance"
CHEAPER = "cheaper or cleaner away, within the SLO target"
FASTER = "predicted faster away"
REASONS = (HOME_MISSING, HOME_FULL, CACHE, IGNORES_DISTANCE, CHEAPER, FASTER)

_DISTANCE_BLIND = {"drawn", "sampled_pair", "least", "chosen"}


class Crossing:
    def __init__(self, world: World) -> None:
        self.zone_region = list(world.zone_region)
        self.home_region = [int(r) for r in world.home_region]

    def __call__(self, population: int, explanation: Explanation) -> str:
        home = self.home_region[population]
        if self.zone_region[explanation.winner] == home:
            return ""
        home_rows = [r for r in explanation.rows if self.zone_region[r.zone] == home]
        if not home_rows:
            return HOME_MISSING
        if explanation.rule in _DISTANCE_BLIND:
            return IGNORES_DISTANCE
        winner = explanation.row(explanation.winner)
        home_hit = max(r.terms.get("hit_tokens", 0.0) for r in home_rows)
        if winner is not None and winner.terms.get("hit_tokens", 0.0) > home_hit:
            return CACHE
        if not any(r.eligible for r in home_rows):
            return HOME_FULL
        if explanation.rule == "cheapest_meeting":
            return CHEAPER
        return FASTER
