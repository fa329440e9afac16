"""Hedged requests in virtual time: a second copy after the policy's delay, the first token wins,
the loser is cancelled (a mixin of the simulator's `_Run`; the rules are the dispatch core's)."""

from __future__ import annotations

import random

from grid.dispatch.core import Attempts, Dispatch
from grid.dispatch.gateway_stage import GatewayStage
from grid.routing.view import GridView
from grid.serving.request import CANCELLED, Request
from grid.serving.zone import Zone
from grid.sim.events import _DELIVER


class Hedging:
    """`on_hedge`, `drop_twin` and `hand_over` of the simulator's run."""

    # The run's state these read and write (declared for the type checker; `_Run` sets it).
    dispatch: Dispatch
    view: GridView
    zones: list[Zone]
    tries: dict[Request, Attempts]
    next_id: int
    jitter_ratio: float
    retry_jitter: random.Random
    gateway: GatewayStage | None

    def push(self, t: float, kind: int, payload: object) -> None:
        raise NotImplementedError  # _Run's

    def reschedule(self, zi: int, top_done: bool = False) -> None:
        raise NotImplementedError  # _Run's

    def on_hedge(self, original: Request, t: float) -> None:
        if original.status or original.twin is not None:
            return  # ended already
        if original.first_token_s >= 0.0:
            return  # its first token exists (at worst still on its way to the client)
        zb = self.dispatch.hedge(original, self.tries.get(original), t)
        if zb < 0:
            return
        copy = original.copy(self.next_id)
        self.next_id += 1
        rtt_s = self.view.rtt_s[original.population][zb]
        if self.jitter_ratio > 0:  # a copy crosses the network like any attempt
            rtt_s *= 1.0 + self.retry_jitter.expovariate(1.0 / self.jitter_ratio)
        if self.gateway is not None:
            rtt_s = self.gateway.round_trip_s(rtt_s)
        copy.zone, copy.rtt_s, copy.attempts = zb, rtt_s, 1
        copy.twin, original.twin = original, copy
        self.dispatch.routed(copy, zb, rtt_s, t)
        self.push(t + 0.5 * rtt_s, _DELIVER, copy)

    def drop_twin(self, winner: Request, now: float) -> None:
        """The winner's first token is out: cancel the other copy and free its zone. (A hedged
        request is one request in flight however many copies it has.)"""
        loser = winner.twin
        assert loser is not None  # only a request with a twin wins a race
        winner.twin = loser.twin = None
        if loser.status:
            return
        copy = winner if winner.attempts == 1 else loser  # attempts = 1 marks the hedge copy
        self.dispatch.hedge_ended(copy, copy.zone, "won" if copy is winner else "lost", now)
        if self.tries and loser in self.tries:
            self.hand_over(loser, winner, now, counted=True)
        if loser.admit_s >= 0.0 and self.zones[loser.zone].cancel(loser, now):
            self.reschedule(loser.zone)
        else:  # still on its way to the zone: dropped on delivery
            loser.cancelled = True
            loser.status = CANCELLED

    def hand_over(self, gone: Request, survivor: Request, now: float, counted: bool = False) -> None:
        """One copy of a hedged request goes, the other lives on: the survivor inherits the zones
        tried (never twice on one zone) and the retries (one request in the budget)."""
        if not counted and gone.attempts == 1:
            self.dispatch.hedge_ended(gone, gone.zone, "failed", now)
        lost = self.tries.pop(gone, None)
        kept = self.tries.get(survivor)
        if kept is None:
            kept = self.tries[survivor] = Attempts(survivor.zone)
        for z in lost.zones if lost is not None else (gone.zone,):
            if z not in kept.zones:
                kept.zones.append(z)
        if lost is not None:
            kept.retries += lost.retries
            if lost.retrying:
                if kept.retrying:
                    self.dispatch.budget.retrying -= 1
                kept.retrying = True
