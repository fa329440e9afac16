"""The live gateway's load-dependent delay, for the simulator (`network.gateway_cpu_*`).

The live gateway is one Python event loop: every request's intake (parse, tokenize, route, the Ray
submit) and every stream's chunks take turns on it. `network.gateway_hop_ms` is a request's own path
through it on an idle loop. Under load the loop is shared, so that path stretches; modelled as
processor sharing (M/G/1-PS: a job of size x takes x / (1 − ρ)), with ρ the share of the loop's
cores the load keeps busy:

    ρ = idle load + (requests/s × cpu_per_request + streamed tokens/s × cpu_per_token) / cores

Rates are exponentially weighted over `RATE_WINDOW_S` of arrivals, each counting its whole answer:
in a steady state the tokens admitted per second are the tokens streamed per second. Past ρ = 1 the
loop falls behind: a backlog grows at ρ − 1 seconds per second, and each leg waits for it too.

The result is the request's client↔zone round trip: each leg at least the stretched hop, plus the
backlog on each leg. The live gateway needs none of this (it is the thing modelled); the simulator
applies it where an attempt leaves for its zone. Calibration: `benchmarks/gateway_stage.py`.
"""

from __future__ import annotations

import math

from grid.dispatch.settings import DispatchSettings

RATE_WINDOW_S = 2.0  # the time constant of the rate estimate: a few answers' lengths
MAX_STRETCHED_UTILIZATION = 0.95  # beyond this the backlog, not the stretch, carries the delay


class GatewayStage:
    """One gateway process's event loop (`cores` of CPU at most), shared by intake and streams."""

    __slots__ = (
        "hop_s", "idle_load", "cpu_per_request_s", "cpu_per_token_s", "cores", "utilization", "backlog_s", "_last_s"
    )  # fmt: skip

    def __init__(
        self, hop_s: float, cpu_per_request_s: float, cpu_per_token_s: float, cores: float = 1.0, idle_load: float = 0.0
    ) -> None:
        self.hop_s = hop_s
        self.idle_load = idle_load  # the loop's share busy with no requests at all
        self.cpu_per_request_s = cpu_per_request_s
        self.cpu_per_token_s = cpu_per_token_s
        self.cores = cores
        self.utilization = 0.0  # the requests' share of the loop (ρ − idle load; ρ may exceed 1: overload)
        self.backlog_s = 0.0  # work the loop is behind by
        self._last_s = 0.0

    def arrive(self, output_tokens: int, now_s: float) -> None:
        """A request reached the gateway: its intake and its stream join the load."""
        dt_s = now_s - self._last_s
        if dt_s > 0.0:  # the load decays over the gap; the loop did ∫ρ dt of work in dt_s of time
            decay = math.exp(-dt_s / RATE_WINDOW_S)
            work_s = self.utilization * RATE_WINDOW_S * (1.0 - decay)
            self.backlog_s = max(0.0, self.backlog_s + work_s - (1.0 - self.idle_load) * dt_s)
            self.utilization *= decay
            self._last_s = now_s
        work_s = self.cpu_per_request_s + output_tokens * self.cpu_per_token_s
        self.utilization += work_s / (self.cores * RATE_WINDOW_S)

    def round_trip_s(self, rtt_s: float) -> float:
        """An attempt's client↔zone round trip at the current load: `rtt_s` (the network's, already
        floored at twice the idle hop) with each leg at least the hop stretched by the load, plus the
        backlog."""
        if self.hop_s <= 0.0 and self.backlog_s <= 0.0:
            return rtt_s
        # the hop was measured on an idle gateway, whose loop was already `idle_load` busy
        stretch = (1.0 - self.idle_load) / (1.0 - min(self.idle_load + self.utilization, MAX_STRETCHED_UTILIZATION))
        return max(rtt_s, 2.0 * self.hop_s * stretch) + 2.0 * self.backlog_s


def gateway_stage(settings: DispatchSettings) -> GatewayStage | None:
    """The stage when the scenario models the gateway's CPU (either cost > 0), else None."""
    request_s, token_s = settings.gateway_cpu_per_request_s, settings.gateway_cpu_per_token_s
    if request_s <= 0.0 and token_s <= 0.0:
        return None
    return GatewayStage(settings.gateway_hop_s, request_s, token_s, settings.gateway_cores, settings.gateway_idle_load)
