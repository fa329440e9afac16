"""The demand section of a scenario (`demand:`): sizes, the diurnal curve, flash crowds, trace replay
and sessions. Part of the scenario schema (grid/scenario.py re-exports every name), kept beside the
demand models that read it; validation errors name file, line and field path as for the rest.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from grid.units import parse_duration_s

Seconds = Annotated[float, BeforeValidator(parse_duration_s), Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SizeSpec(_Strict):
    """Token counts: lognormal(mu, sigma), exponential (geometric integers with this mean) or fixed."""

    dist: Literal["lognormal", "exponential", "fixed"] = "lognormal"
    mu: float | None = None
    sigma: float | None = Field(default=None, ge=0)
    mean: float | None = Field(default=None, ge=1)
    min_tokens: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=32768, ge=1)

    @model_validator(mode="after")
    def _parameters_present(self) -> SizeSpec:
        if self.dist == "lognormal" and (self.mu is None or self.sigma is None):
            raise ValueError("a lognormal size needs mu and sigma")
        if self.dist != "lognormal" and self.mean is None:
            raise ValueError(f"a {self.dist} size needs mean")
        if self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must be ≤ max_tokens")
        return self


class Sizes(_Strict):
    prompt: SizeSpec
    output: SizeSpec
    rho: float = Field(default=0.0, ge=-1, le=1)


class Diurnal(_Strict):
    """Each population's rate follows its local hour: trough at night, peak in the evening."""

    peak_hour_local: float = Field(default=20.0, ge=0, lt=24)
    trough_hour_local: float = Field(default=4.0, ge=0, lt=24)
    trough_ratio: float = Field(default=0.3, gt=0, le=1)


class FlashCrowd(_Strict):
    population: str
    at_s: Seconds
    duration_s: Seconds
    factor: float = Field(gt=0)


class TraceReplay(_Strict):
    """Replay a request trace instead of the demand model (grid/demand/traces.py, replay.py). A relative
    `path` is read from the scenario file's folder (from the working directory when given by --set)."""

    path: str
    block_tokens: int = Field(default=0, ge=0)  # tokens per hash_ids block (Mooncake: 512); 0: none
    time_unit: Literal["s", "ms"] | None = None  # numeric timestamps' unit; default JSONL ms, BurstGPT s
    start_s: Seconds = 0.0  # replay from this far after the trace's first row …
    duration_s: Seconds | None = None  # … for this long of the trace's own time (default: to its end) …
    limit: int | None = Field(default=None, ge=1)  # … and at most this many requests
    end: Literal["cut", "drain"] = "cut"  # at the trace's end: stop there, or stop arrivals and drain
    loop: bool = False
    failed_rows: Literal["skip", "prefill"] = "skip"  # rows with 0 output tokens: skip, or a 1-token answer
    populations: Literal["sessions", "shares"] = "sessions"  # a session stays on one population, or all by share


class ThinkTime(_Strict):
    """Seconds from one turn's send to the next turn's: lognormal by its median and sigma (0: fixed)."""

    median_s: Seconds
    sigma: float = Field(default=1.0, ge=0)
    min_s: Seconds = 0.0


class SessionApp(_Strict):
    """One application's conversations (grid/demand/sessions.py); `turns` counts turns with a size spec."""

    share: float = Field(gt=0, description="share of sessions")
    system_prompt_tokens: int = Field(default=0, ge=0)
    turns: SizeSpec
    first_message: SizeSpec | None = Field(default=None, description="the first turn's message (default: message)")
    message: SizeSpec
    attachment_share: float = Field(default=0.0, ge=0, le=1, description="turns whose message is an attachment")
    attachment: SizeSpec | None = None
    answer: SizeSpec
    think: ThinkTime

    @model_validator(mode="after")
    def _attachment_sized(self) -> SessionApp:
        if self.attachment_share > 0 and self.attachment is None:
            raise ValueError("attachment_share > 0 needs an attachment size")
        return self


class Sessions(_Strict):
    """Multi-turn sessions instead of independent requests; `demand.rate_rps` still counts requests."""

    block_tokens: int = Field(default=16, ge=1, description="tokens per generated prefix hash (vLLM's block)")
    system_prompt: Literal["per_app", "per_population"] = "per_app"
    apps: dict[str, SessionApp] = Field(min_length=1)


class Demand(_Strict):
    rate_rps: float = Field(ge=0, description="world-wide mean arrival rate at scale 1 (daily mean)")
    scale: float = Field(default=1.0, ge=0)
    start_utc: dt.datetime = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)
    diurnal: Diurnal | None = None
    # Seconds of the demand's day per second of run: 1 is real time; 240 plays an evening's 10 hours
    # in 150 s (the demo). It moves the diurnal curve only: tariffs keep the run's own clock.
    day_speed: float = Field(default=1.0, gt=0)
    sizes: Sizes
    flash_crowds: list[FlashCrowd] = []
    trace: TraceReplay | None = None
    sessions: Sessions | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Demand:
        if self.trace is not None and self.sessions is not None:
            raise ValueError("give demand.trace or demand.sessions, not both (a trace brings its own sessions)")
        return self
