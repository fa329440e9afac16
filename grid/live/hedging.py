"""Hedged requests in the live gateway ("The Tail at Scale", Dean & Barroso 2013), as the simulator
drives them (grid/sim/simulator.py), for policies with the hedge hooks (`hedged`):

- at arrival, `policy.hedge_after_s(request, view)` gives a client-side delay (None: no hedge yet).
  If the request has no first token when it passes (arrival + delay on the gateway's clock, the
  clock TTFT is measured on), a second copy goes to `policy.choose_hedge(request, view)`'s zone — at
  most one copy per request, and only within the budget: copies ≤ `hedge_budget` × requests so far;
- the first copy whose first token reaches the gateway wins; the other is cancelled at its zone
  actor (`ZoneActor.cancel`), which frees its capacity in the serving model;
- a copy refused or failed before its first token just goes and the other carries on; only when both
  have failed does the request fall back to the gateway's retries (the copy's zone counts as tried,
  not as a retry);
- the client sees one answer, the winner's (its headers name the winner's zone, plus `x-grid-hedge`);
  RunStats, `grid_requests_total` and usage count the request once, with the winner's figures; the
  loser never reaches them. `policy.observe` sees the winner, so its p95 threshold learns from live
  first-token times.

Where the live grid differs from the simulator (by a few ms of Ray transport): "no first token" and
"first" are what the gateway has received, not the zone's model clock.

Both copies carry the request's id (each zone actor keys its own requests), so the gateway tells
them apart by zone: `_Live.hedge` is the copy while the two race. Each hedge ends with one outcome,
counted in `counts` and `grid_hedges_total{outcome}`: won, lost (the original's first token came
first, or the request ended before either) or failed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

from grid.live.zone_actor import NOTIFY_FIRST, NOTIFY_STREAM

if TYPE_CHECKING:
    from grid.live.gateway import GridGateway, _Live

log = logging.getLogger(__name__)


class Hedging:
    """The gateway's hedging: arms each request at arrival, races the copies, keeps the counts."""

    def __init__(self, gateway: GridGateway) -> None:
        self.gateway = gateway
        self.dispatch = gateway.dispatch  # the rules: when, where, the budget, the counts

    @property
    def counts(self) -> dict[str, int]:
        return self.dispatch.hedges

    def arm(self, live: _Live) -> None:
        """At arrival: when a copy becomes due (the view is the arrival's, as in the simulator)."""
        request = live.request
        delay_s = self.dispatch.hedge_delay_s(request, request.arrival_s)
        if delay_s is not None:
            live.hedge_at_s = request.arrival_s + delay_s

    async def race(self, live: _Live, zi: int, stream: bool, sent_s: float):
        """Send the request to `zi` and, if its first token is not in when the hedge is due, a copy to
        the policy's hedge zone. Returns what the winner's `GridGateway.send` returned (headers, half
        RTT, first update), None when every copy failed, or its deadline marker. On return the
        request's zone, RTT, update queue and admission are the winner's."""
        gateway = self.gateway
        notify = NOTIFY_STREAM if stream else NOTIFY_FIRST  # a non-streaming copy needs its first token too
        primary = asyncio.ensure_future(gateway.send(live, live, zi, notify, sent_s))
        legs: dict[asyncio.Future, _Live] = {primary: live}  # the copies still racing
        hedge = zb = None
        outcome = "lost"  # unless the copy wins or fails
        try:
            done, _ = await asyncio.wait((primary,), timeout=max(0.0, live.hedge_at_s - gateway.now()))
            if done:  # in time: a first token (the request is disarmed), or a failure (its retry stays armed)
                del legs[primary]
                result = primary.result()
                if result is not None:
                    live.hedge_at_s = -math.inf
                return result
            due_s, live.hedge_at_s = live.hedge_at_s, -math.inf  # one copy per request at most
            zb = self._hedge_zone(live)
            if zb is None:
                del legs[primary]
                return await primary
            hedge = self._launch(live, zb, notify, due_s)
            legs[hedge] = live.hedge
            while legs:
                done, _ = await asyncio.wait(tuple(legs), return_when=asyncio.FIRST_COMPLETED)
                results = {task: task.result() for task in done}
                for task, result in results.items():
                    if result is None:  # failed before a first token: the other copy carries on
                        if task is hedge:
                            outcome = "failed"
                            live.hedge = None
                        del legs[task]
                    elif not isinstance(result, tuple):  # the deadline passed: the request ends
                        return result
                firsts = [task for task, result in results.items() if result is not None]
                if firsts:
                    winner = min(firsts, key=lambda task: self._first_token_s(legs[task], results[task]))
                    if winner is hedge:
                        outcome = "won"
                    return self._settle(live, legs, winner, results[winner], outcome)
            return None  # both failed: the gateway retries elsewhere (or gives up)
        finally:
            for task, leg in legs.items():  # the request ended (deadline, client gone) while they raced
                self._drop(task, leg)
            if hedge is not None:
                live.hedge = None
                self._count(live, zb, outcome)

    def _hedge_zone(self, live: _Live) -> int | None:
        """The copy's zone: the dispatch core's hedge rule (budget, zones not tried, the policy's choice)."""
        zb = self.dispatch.hedge(live.request, live.attempts, self.gateway.now())
        return zb if zb >= 0 else None

    def _launch(self, live: _Live, zb: int, notify: int, due_s: float) -> asyncio.Future:
        """Send the copy to `zb`: the request's id and sizes, leaving the gateway at `due_s`."""
        gateway = self.gateway
        r = live.request
        twin = r.copy(r.id)
        twin.attempts = r.attempts  # a copy runs beside this attempt: it is no attempt of its own
        leg = live.hedge = type(live)(twin, deadline_s=live.deadline_s)  # a _Live (its zone is tried already)
        return asyncio.ensure_future(gateway.send(live, leg, zb, notify, due_s))

    def _first_token_s(self, leg: _Live, sent: tuple) -> float:
        """When a copy's first token was produced, on the gateway's clock (to order two that arrived together)."""
        return sent[2][2] - self.gateway.monitor.clock_offset_s[leg.request.zone]

    def _settle(self, live: _Live, legs: dict, winner: asyncio.Future, sent: tuple, outcome: str) -> tuple:
        """The winner's first token is in: cancel the other copy, make the request the winner's."""
        leg = legs.pop(winner)
        for task, other in list(legs.items()):
            self._drop(task, other)
            del legs[task]
        if leg is not live:  # the copy won: the request continues on its zone
            request, twin = live.request, leg.request
            request.zone, request.rtt_s = twin.zone, twin.rtt_s
            live.queue, live.admitted, live.incarnation = leg.queue, leg.admitted, leg.incarnation
        live.hedge = None
        headers, half, first = sent
        return {**headers, "x-grid-hedge": outcome}, half, first

    def _drop(self, task: asyncio.Future, leg: _Live) -> None:
        """Stop a losing copy: its task (an unanswered submit cancels itself if admitted later, see
        `GridGateway.send`), and its zone if it was admitted there."""
        if not task.done():
            task.cancel()
        if leg.admitted:
            leg.admitted = False
            self.gateway.cancel_on_zone(leg.request.zone, leg.request.id)

    def _count(self, live: _Live, zone: int, outcome: str) -> None:
        self.dispatch.hedge_ended(live.request, zone, outcome, self.gateway.now())
