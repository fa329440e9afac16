"""A scenario's demand as a driver runs it: its arrivals, when they stop, and the mean request size.

Three sources, one interface: the demand model's Poisson arrivals with lognormal sizes, multi-turn
sessions (`demand.sessions`), or a trace (`demand.trace`). The mean request size each implies is
what capacity is computed at (`grid.world.build_world`: the routers' capacity view and the report's
offered load), so a trace is judged by its own sizes, not the scenario's lognormal ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grid.demand.arrivals import ArrivalChunk, DemandModel, mean_tokens, poisson_arrivals, size_sampler
from grid.demand.replay import SessionAffinity, replay_horizon, trace_arrivals, trace_window
from grid.demand.sessions import SessionModel, session_arrivals
from grid.scenario import Scenario, Sessions


@dataclass
class DemandPlan:
    """`arrivals(rng)` until `horizon_s`; the run ends there, or when the grid has drained if `drain`."""

    kind: str  # "poisson", "sessions" or "trace"
    horizon_s: float
    drain: bool
    arrivals: Callable[[np.random.Generator], Iterable[ArrivalChunk]]
    mean_tokens: tuple[float, float]  # prompt, output: what capacity is computed at
    info: dict[str, Any] = field(default_factory=dict)
    _affinity: SessionAffinity | None = None

    def meta(self) -> dict[str, Any] | None:
        """What the report says about the demand (traces: rows, failures, sessions kept)."""
        if self.kind == "poisson":
            return None
        info = dict(self.info)
        if self._affinity is not None:
            info["requests_kept_in_session"] = self._affinity.continued
        return info


def demand_plan(scenario: Scenario, duration_s: float, rate_scale: float = 1.0, seed: int = 0) -> DemandPlan:
    """The arrivals of `scenario` over `duration_s`, every rate × `rate_scale` (a trace plays faster)."""
    demand = scenario.demand
    model = DemandModel(demand, scenario.populations)
    if demand.trace is not None:
        scale = rate_scale * demand.scale
        cfg = demand.trace
        if not cfg.loop and (cfg.duration_s is None or cfg.duration_s > duration_s * scale):
            cfg = cfg.model_copy(update={"duration_s": duration_s * scale})  # read no further than the run replays
        window = trace_window(cfg)
        horizon = replay_horizon(cfg, window, duration_s, scale)
        st = window.stats
        plan = DemandPlan("trace", horizon, cfg.end == "drain", lambda rng: (), (st.mean_prompt, st.mean_output))
        plan.info = {
            "kind": "trace",
            "path": str(window.path),
            "format": st.format,
            "gzip": st.gzip,
            "window_s": [cfg.start_s, window.end_s],
            "rows_read": st.rows,
            "requests": st.replayed,
            "failed_rows": st.failed,
            "failed_rows_policy": cfg.failed_rows,
            "empty_prompt_rows": st.empty_prompt,
            "out_of_order_rows": st.out_of_order,
            "block_tokens": cfg.block_tokens,
            "mean_prompt_tokens": st.mean_prompt,
            "mean_output_tokens": st.mean_output,
            "end": cfg.end,
            "warnings": list(window.warnings),
        }

        def arrivals(rng: np.random.Generator) -> Iterable[ArrivalChunk]:
            plan._affinity = SessionAffinity(model.shares, rng, cfg.populations == "sessions", seed)
            return trace_arrivals(cfg, window, plan._affinity, scale, duration_s)

        plan.arrivals = arrivals
        return plan
    if rate_scale != 1.0:
        model.mean_rate_rps *= rate_scale
    if demand.sessions is not None:
        sessions = session_model(demand.sessions, len(scenario.populations), scenario.model.context_tokens)
        stats = sessions.stats()
        info = {
            "kind": "sessions",
            "apps": list(demand.sessions.apps),
            "block_tokens": demand.sessions.block_tokens,
            "mean_turns": stats.mean_turns,
            "mean_prompt_tokens": stats.mean_prompt_tokens,
            "mean_output_tokens": stats.mean_output_tokens,
        }
        means = (stats.mean_prompt_tokens, stats.mean_output_tokens)
        return DemandPlan(
            "sessions", duration_s, False, lambda rng: session_arrivals(model, sessions, duration_s, rng), means, info
        )
    sampler = size_sampler(demand.sizes)
    means = (mean_tokens(demand.sizes.prompt), mean_tokens(demand.sizes.output))
    return DemandPlan(
        "poisson", duration_s, False, lambda rng: poisson_arrivals(model, sampler, duration_s, rng), means
    )


def mean_request_tokens(scenario: Scenario) -> tuple[float, float]:
    """Mean prompt and output tokens of the scenario's requests (the trace's own over its configured
    window, the sessions'). A run knows its own window better: `DemandPlan.mean_tokens`."""
    demand = scenario.demand
    if demand.trace is not None:
        st = trace_window(demand.trace).stats
        return st.mean_prompt, st.mean_output
    if demand.sessions is not None:
        stats = session_model(demand.sessions, len(scenario.populations), scenario.model.context_tokens).stats()
        return stats.mean_prompt_tokens, stats.mean_output_tokens
    return mean_tokens(demand.sizes.prompt), mean_tokens(demand.sizes.output)


def session_model(spec: Sessions, n_populations: int, context_tokens: int) -> SessionModel:
    return _session_model(spec.model_dump_json(), n_populations, context_tokens)


@functools.lru_cache(maxsize=16)
def _session_model(spec_json: str, n_populations: int, context_tokens: int) -> SessionModel:
    # Cached so its fixed-seed statistics are drawn once per process, however often a world is built.
    return SessionModel(Sessions.model_validate_json(spec_json), n_populations, context_tokens)
