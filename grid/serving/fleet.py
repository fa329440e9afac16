"""A zone's replicas over time: warming up, serving, draining, released; on demand or spot.

    asked for ──(cold start: provisioning, loading weights, engine start)──▶ serving
    serving ──(scaled down)──▶ draining: no new admissions, its sequences finish ──▶ released
    serving, spot ──(preempted)──▶ draining until the notice ends; what is left then fails ──▶ released

Billing runs from the moment a replica is asked for until it is released, so `billing` is the
timeline of replicas paid for, `(time, on demand, spot)`, one entry per change; grid/scaling/billing.py
prices it. Which replicas a zone should have is the autoscaler's question (grid/scaling); this is
how the serving model carries out the answer, in either clock: the drivers call `set_replicas` and
`preempt_spot`, and the changes happen at their times inside `Zone.advance` (FAILED events for
requests a preemption cuts off). A mixin of `Zone`, whose state it reads and writes.
"""

from __future__ import annotations

from collections import deque
from heapq import heappush
from typing import Final

from mypy_extensions import mypyc_attr

from grid.scenario import GpuProfile
from grid.serving.engine import FAILED, IDLE, Engine, Event
from grid.serving.request import ERROR, Request

# timer kinds: a warming replica starts serving; a preemption notice ends
READY: Final = 0
KILL: Final = 1


@mypyc_attr(allow_interpreted_subclasses=True)  # as `Zone`, its subclass (mypyc asks it of the bases too)
class Fleet:
    """The replica life cycle of `Zone` (grid/serving/zone.py)."""

    # Its own state, and the zone's counters it writes (their slots live here, so the type checker
    # sees them); the rest of the zone's state it reads is declared below and set by `Zone`.
    __slots__ = (
        "_accepting", "_timers", "_timer_seq", "_warming", "_free_slots", "billing", "draining", "fleet_version",
        "replicas", "in_system", "kv_used",
    )  # fmt: skip
    replicas: int
    in_system: int
    kv_used: int
    profile: GpuProfile
    slow_factor: float
    block_tokens: int
    _engines: list[Engine]
    _waiting: deque[Request]

    def _account(self, now: float) -> None:
        raise NotImplementedError  # Zone's

    def _fill(self, now: float) -> None:
        raise NotImplementedError  # Zone's

    def _unwake(self, engine: Engine) -> None:
        raise NotImplementedError  # Zone's

    def _init_fleet(self, replicas: int, now: float = 0.0) -> None:
        self._accepting: list[Engine] = list(self._engines)
        self._timers: list[tuple[float, int, int, object]] = []  # (time, seq, kind, token or engine)
        self._timer_seq = 0
        self._warming: dict[int, tuple[float, bool]] = {}  # token → (ready at, spot)
        self._free_slots: list[int] = []
        self.billing: list[tuple[float, int, int]] = [(now, replicas, 0)]
        self.draining = 0
        self.fleet_version = 0  # bumped at every change, so a driver refreshes the router's view only then

    # --- what drivers call --------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """Replicas (serving, warming, draining) now."""
        return self.replicas, len(self._warming), self.draining

    def kinds(self) -> tuple[int, int]:
        """Replicas paid for now and not on their way out: (on demand, spot); what `set_replicas` compares with."""
        spot = sum(1 for e in self._accepting if e.spot) + sum(1 for _, s in self._warming.values() if s)
        return self.replicas + len(self._warming) - spot, spot

    def set_replicas(self, on_demand: int, spot: int, now: float, cold_start_s: float) -> tuple[int, int]:
        """Aim at `on_demand` + `spot` replicas: start the missing ones (serving after `cold_start_s`),
        retire the extra ones (warming ones first, the latest asked for; then the emptiest serving
        ones drain). Returns how many were (started, retired)."""
        self._account(now)
        started = retired = 0
        for want, is_spot in ((on_demand, False), (spot, True)):
            have = self.kinds()[is_spot]
            for _ in range(want - have):
                if cold_start_s > 0:
                    self._warm(now + cold_start_s, is_spot)
                else:  # already warm (a run's initial fleet)
                    self._start_serving(is_spot, now)
                started += 1
            for _ in range(have - want):
                self._retire(is_spot, now)
                retired += 1
        if started or retired:
            self._bill(now)
        return started, retired

    def preempt_spot(self, count: int, now: float, notice_s: float) -> int:
        """The spot market takes back up to `count` replicas: warming ones stop at once, serving ones
        drain and, when the notice ends, fail what they still hold. Returns how many were taken."""
        self._account(now)
        taken = 0
        for token in [t for t, (_, s) in self._warming.items() if s][:count]:
            del self._warming[token]
            taken += 1
        victims = sorted((e for e in self._accepting if e.spot), key=lambda e: e.n_slots)[: count - taken]
        for engine in victims:
            self._stop_accepting(engine)
            self._push_timer(now + notice_s, KILL, engine)
            taken += 1
        for engine in victims:
            self._release_if_empty(engine, now)
        if taken:
            self._bill(now)
        return taken

    # --- internals ----------------------------------------------------------------------------

    def _push_timer(self, t: float, kind: int, payload: object) -> None:
        self._timer_seq += 1
        heappush(self._timers, (t, self._timer_seq, kind, payload))

    def _warm(self, ready_s: float, spot: bool) -> None:
        self._timer_seq += 1
        token = self._timer_seq
        self._warming[token] = (ready_s, spot)
        heappush(self._timers, (ready_s, token, READY, token))

    def _retire(self, spot: bool, now: float) -> None:
        warming = [t for t, (_, s) in self._warming.items() if s == spot]
        if warming:
            del self._warming[max(warming, key=lambda t: (self._warming[t][0], t))]
            return
        engine = min((e for e in self._accepting if e.spot == spot), key=lambda e: (e.n_slots, -e.index))
        self._stop_accepting(engine)
        self._release_if_empty(engine, now)

    def _stop_accepting(self, engine: Engine) -> None:
        engine.accepting = False
        self._accepting.remove(engine)
        self.replicas = len(self._accepting)
        self.draining += 1

    def _release_if_empty(self, engine: Engine, now: float) -> None:
        if not engine.accepting and not engine.released and engine.n_slots == 0:
            self._release(engine, now)

    def _release(self, engine: Engine, now: float) -> None:
        if engine.phase != IDLE:
            engine.busy_s += now - engine.busy_since
        engine.released = True
        self.draining -= 1
        engine.phase = IDLE
        engine.version += 1
        self._unwake(engine)
        self._free_slots.append(engine.index)
        self._bill(now)

    def _on_timer(self, kind: int, payload, now: float, events: list[Event]) -> None:
        if kind == READY:
            spec = self._warming.pop(payload, None)  # type: ignore[arg-type]
            if spec is None:
                return  # retired while warming
            self._start_serving(spec[1], now)
            self._bill(now)
            if self._waiting:
                self._fill(now)
            return
        engine: Engine = payload
        if engine.released:
            return  # drained before the notice ended
        held = engine.kv.held_blocks
        for request in engine.open_requests():
            if not request.cancelled and request.finish_s < 0.0:
                request.status = ERROR
                request.finish_s = now
                self.in_system -= 1
                events.append((FAILED, request))
        self.kv_used -= held * self.block_tokens
        self._release(engine, now)

    def _start_serving(self, spot: bool, now: float) -> None:
        if self._free_slots:
            index = self._free_slots.pop()
            old = self._engines[index]
            engine = Engine(index, self.profile, self.slow_factor, spot)
            engine.version = old.version + 1  # as if it went on: ties between engines break by version
            engine.busy_s = old.busy_s
            self._engines[index] = engine
        else:
            engine = Engine(len(self._engines), self.profile, self.slow_factor, spot)
            self._engines.append(engine)
        engine.busy_since = now
        self._accepting.append(engine)
        self.replicas = len(self._accepting)

    def _bill(self, now: float) -> None:
        self.fleet_version += 1
        spot = sum(1 for e in self._engines if e.spot and not e.released) + sum(
            1 for _, s in self._warming.values() if s
        )
        paid = sum(1 for e in self._engines if not e.released) + len(self._warming)
        entry = (now, paid - spot, spot)
        if self.billing[-1][0] == now:
            self.billing[-1] = entry
        elif self.billing[-1][1:] != entry[1:]:
            self.billing.append(entry)
