"""Why a request went where it went: each routing decision as the terms the policy scored and the rule
that picked the winner from them.

A policy explains a decision through one method, `explain(request, candidates, view) -> Explanation`,
called by the dispatch core just before `choose` on the same view (and, for policies that draw at
random, the same draws: they peek at their generator and put it back). An explanation names its
`rule` (one of `RULES`), so the winner can be recomputed from the terms alone (`recompute`); the
tests check that it is the zone `choose` then picked, for every built-in policy. A policy without
`explain` still gets one: the candidates with their RTT and the winner, rule `chosen`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

TIE_S = 1e-3  # scores within a millisecond tie; the nearer candidate keeps it (as latency_aware's choose)


@dataclass(frozen=True)
class Row:
    """One candidate: its zone index, the policy's terms (seconds in `*_s`, shares, counts), the score
    the rule ranks by (lower wins; NaN when the rule does not rank) and whether it passed the policy's
    filter (headroom, the SLO target)."""

    zone: int
    terms: dict[str, float]
    score: float = math.nan
    eligible: bool = True


@dataclass(frozen=True)
class Explanation:
    policy: str
    rule: str
    rows: tuple[Row, ...]  # the candidates, nearest first
    winner: int  # the rule's pick; the dispatch core overwrites it with `choose`'s if they differ (a bug)
    reason: str
    context: dict[str, float] = field(default_factory=dict)  # rule inputs that are not per candidate

    def row(self, zone: int) -> Row | None:
        return next((r for r in self.rows if r.zone == zone), None)

    def to_dict(self, zone_ids: Sequence[str]) -> dict:
        return {
            "policy": self.policy,
            "rule": self.rule,
            "winner": zone_ids[self.winner],
            "reason": self.reason,
            "context": self.context,
            "candidates": [
                {"zone": zone_ids[r.zone], "score": _num(r.score), "eligible": r.eligible,
                 **{k: _num(v) for k, v in r.terms.items()}}
                for r in self.rows
            ],
        }  # fmt: skip


def _num(value: float) -> float | None:
    return None if value != value or math.isinf(value) else round(value, 6)


# --- rules: the winner from the rows alone ----------------------------------------------------------


def lowest(rows: Sequence[Row]) -> int:
    """The lowest score; within `TIE_S` the earlier (nearer) row keeps it."""
    best, best_s = rows[0].zone, math.inf
    for r in rows:
        if r.score < best_s - TIE_S:
            best, best_s = r.zone, r.score
    return best


def lowest_eligible(rows: Sequence[Row]) -> int:
    """`lowest` among the eligible rows; `lowest` over all when none is."""
    eligible = [r for r in rows if r.eligible]
    return lowest(eligible) if eligible else lowest(rows)


def least(rows: Sequence[Row]) -> int:
    """The lowest score exactly; the first row keeps a tie (Python's `min`)."""
    return min(rows, key=lambda r: r.score).zone


def marked(rows: Sequence[Row], term: str) -> int:
    """The row whose `term` is 1 (a draw the policy made: its turn, its random pick)."""
    return next(r.zone for r in rows if r.terms.get(term) == 1.0)


def sampled_pair(rows: Sequence[Row]) -> int:
    """Of the two rows marked `sampled` (in draw order: 1 then 2), the lower load; a tie keeps the nearer."""
    a = next(r for r in rows if r.terms.get("sampled") == 1.0)
    b = next(r for r in rows if r.terms.get("sampled") == 2.0)
    if a.score == b.score:
        return min(a, b, key=lambda r: rows.index(r)).zone
    return a.zone if a.score < b.score else b.zone


def cheapest_meeting(rows: Sequence[Row]) -> int:
    """Among eligible rows (headroom, predicted TTFT within the target) the lowest cost (rounded to 3
    decimals), then the lowest predicted TTFT; when none is eligible, `lowest_eligible` on `headroom`."""
    eligible = [r for r in rows if r.eligible]
    if not eligible:
        return _on_headroom(rows)
    return min(eligible, key=lambda r: (round(r.terms["cost"], 3), r.terms["predicted_s"])).zone


def _on_headroom(rows: Sequence[Row]) -> int:
    return lowest_eligible([Row(r.zone, r.terms, r.score, r.terms["headroom"] == 1.0) for r in rows])


def spill_nearest(rows: Sequence[Row]) -> int:
    """The nearest eligible row (meets the SLO target); else `lowest_eligible` on `headroom`."""
    for r in rows:
        if r.eligible:
            return r.zone
    return _on_headroom(rows)


def longest_hit_or_lowest(rows: Sequence[Row], context: dict[str, float]) -> int:
    """prefix_aware: when the grid is balanced, the longest expected hit among rows whose queue allows
    (nearest on a tie) if it covers more than the threshold; otherwise `lowest_eligible`."""
    if context.get("balanced") == 1.0:
        best, best_hit = -1, 0.0
        for r in rows:
            if r.terms["hit_tokens"] > best_hit and r.terms["queue_allows"] == 1.0:
                best, best_hit = r.zone, r.terms["hit_tokens"]
        if best >= 0 and best_hit > context["threshold_tokens"]:
            return best
    return lowest_eligible(rows)


RULES: dict[str, Callable[[Explanation], int]] = {
    "lowest": lambda e: lowest(e.rows),
    "lowest_eligible": lambda e: lowest_eligible(e.rows),
    "least": lambda e: least(e.rows),
    "drawn": lambda e: marked(e.rows, "drawn"),
    "sampled_pair": lambda e: sampled_pair(e.rows),
    "cheapest_meeting": lambda e: cheapest_meeting(e.rows),
    "spill_nearest": lambda e: spill_nearest(e.rows),
    "longest_hit_or_lowest": lambda e: longest_hit_or_lowest(e.rows, e.context),
    "chosen": lambda e: e.winner,  # a policy without `explain`: only its answer is known
}


def recompute(explanation: Explanation) -> int:
    """The winner again, from the explanation's rows and rule alone."""
    return RULES[explanation.rule](explanation)


def make(policy: str, rule: str, rows: list[Row], reason: Callable[[int, Row], str], **context: float) -> Explanation:
    """An explanation whose winner is its rule's pick; `reason(winner, its row)` says why in words."""
    draft = Explanation(policy, rule, tuple(rows), -1, "", dict(context))
    winner = RULES[rule](draft)
    row = draft.row(winner)
    return replace(draft, winner=winner, reason=reason(winner, row) if row else "")


def unexplained(policy: str, candidates: Sequence[int], rtt_s: Sequence[float], winner: int) -> Explanation:
    """What is known of a decision by a policy without `explain`: the candidates and its answer."""
    rows = tuple(Row(z, {"rtt_s": rtt_s[z]}) for z in candidates)
    return Explanation(policy, "chosen", rows, winner, "the policy's choice (it does not explain its terms)")
