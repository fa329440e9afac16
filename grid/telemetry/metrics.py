"""Every Prometheus metric family of the grid, defined once; both drivers feed the same object.

`GridMetrics(registry, scenario)` registers the families on a registry you own (no import-time
globals) and pre-creates every series that is known in advance, so a fresh grid exports zeros and
dashboards show flat lines instead of "no data". The definitions live in
`grid.telemetry.metric_families`; this module records the observations. Label values come only from
the scenario (zone, region and population ids) and from fixed sets (`STATUSES`, `FINISHED_REASONS`,
`RETRY_REASONS`, `HEDGE_OUTCOMES`); a value outside them raises `ValueError` — `/metrics` stays
bounded whatever clients send.

vLLM families (names, types and buckets as vLLM exports them, so vLLM's dashboards and PromQL work
unchanged; counters are declared without `_total` and exposed with it), each labelled
`model_name`, `region`, `zone`:

- gauges `vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc` (0–1),
  set by `observe_zone_report`;
- counters `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`,
  `vllm:request_success_total{finished_reason=stop|length|abort|error}` (`observe_request_end`) and
  `vllm:num_preemptions_total` (the serving model never preempts: it stays 0);
- histograms, all fed by `observe_request_end`: `vllm:time_to_first_token_seconds`,
  `vllm:inter_token_latency_seconds` and the legacy `vllm:time_per_output_token_seconds` (same
  samples), `vllm:request_time_per_output_token_seconds` (per request),
  `vllm:e2e_request_latency_seconds`, `vllm:request_{queue,prefill,decode,inference}_time_seconds`,
  `vllm:request_prompt_tokens` and `vllm:request_generation_tokens` (1-2-5 buckets up to the context).

Grid families (base units, bounded labels):

| family | type | labels | fed by |
|---|---|---|---|
| `grid_requests_total` | counter | population, zone (`none`: no zone took it), status | `observe_request_end` |
| `grid_routing_decision_seconds` | histogram | policy | `observe_route` |
| `grid_rtt_applied_seconds` | summary (`_sum`, `_count`) | population, region | `observe_route` |
| `grid_zone_up` | gauge 1/0 | zone, region | `observe_zone_report`, `set_zone_up` |
| `grid_zone_utilization` | gauge (ratio; >1 = overload) | zone, region | `observe_zone_report` |
| `grid_load_report_age_seconds` | gauge | zone, region | `observe_zone_report` |
| `grid_retries_total` | counter | zone (that refused/failed), reason | `observe_retry` |
| `grid_failovers_total` | counter | from_zone, to_zone | `observe_retry` |
| `grid_hedges_total` | counter | model_name, population, zone (the copy's), outcome | `observe_hedge` (hedging grids) |
| `grid_cost_usd_total`, `grid_energy_joules_total`, `grid_carbon_grams_total` | counter | zone, region | `tick` |
| `grid_zone_replicas` | gauge | zone, region, state (serving, warming, draining) | `observe_zone_fleet` |
| `grid_scaling_events_total` | counter | zone, reason (`SCALING_REASONS`) | `observe_scaling` |
| `grid_zone_cost_usd_per_hour` | gauge | zone, region | `observe_zone_fleet` |
| `grid_slo_seconds` | gauge | slo (ttft, tpot[, e2e]) | constructor |
| `grid_zone_info` | gauge = 1 | zone, region, lat, lon | constructor |
| `grid_population_info` | gauge = 1 | population, lat, lon | constructor |

Zones of one region share its coordinates; `grid_zone_info` places them on a small ring (≈0.6°)
around the region so that a map shows each of them.

Which clock: every duration is passed in, in seconds; this module reads no clock. The vLLM latency
families take what the gateway measures for the client (arrival at the gateway → first/last token
sent back), so they include the network round trip the gateway applies; the queue/prefill/decode
families are zone-side (`Request` timestamps on the zone's clock, or the explicit `*_s` arguments).
"""

from __future__ import annotations

import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from grid.economics import zone_economics
from grid.routing.tariff import local_hour, tariff_factor
from grid.scenario import Scenario
from grid.serving.request import LENGTH, REJECTED, STOP, Request
from grid.telemetry.metric_families import (
    FINISHED_REASON_BY_STATUS,
    HEDGE_OUTCOMES,
    NO_ZONE,
    REPLICA_STATES,
    RETRY_REASONS,
    SCALING_REASONS,
    STATUSES,
    MetricFamilies,
)
from grid.telemetry.prometheus_extras import RegistryWithoutCreated, observe_many

CONTENT_TYPE = CONTENT_TYPE_LATEST  # of `GridMetrics.exposition()`


class GridMetrics(MetricFamilies):
    """All metric families of one grid on one registry; see the module docstring for the list.

    Thread-safe (prometheus_client's values are; `tick` holds a lock), clock-free, and cheap:
    label children are resolved once, at construction (`MetricFamilies`), so an observation is a
    dict lookup and an increment.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        scenario: Scenario,
        model_name: str | None = None,
        policy: str | None = None,
        hedging: bool = False,
    ) -> None:
        """`hedging`: the driver sends hedge copies (its policy hedges), so register `grid_hedges_total`
        with its series pre-created; a grid that never hedges does not export the family at all."""
        super().__init__(registry, scenario, model_name, policy, hedging)
        self._zone_economics = zone_economics(scenario)
        self._utilization = dict.fromkeys(self.zone_ids, 0.0)
        self._last_tick_s: float | None = None
        self._tick_lock = threading.Lock()
        # Elastic zones (grid.scaling): replicas paid for now, spot ones at their discounted weight;
        # cost accrues on them (a static fleet: the scenario's replicas, as before).
        self._start_utc = scenario.demand.start_utc
        self._spot_discount = scenario.autoscaling.spot.discount
        self._tz = {z: scenario.regions[self.zone_region[z]].tz for z in self.zone_ids}
        self._gpus_per_replica = {z: scenario.zones[z].gpus_per_replica for z in self.zone_ids}
        self._usd_per_replica_hour = {
            z: self._gpus_per_replica[z] * scenario.regions[self.zone_region[z]].price_usd_per_gpu_hour
            for z in self.zone_ids
        }
        self._paid = {z: float(scenario.zones[z].replicas) for z in self.zone_ids}
        for zone in self.zone_ids:
            self._z[zone]["cost_per_hour"].set(self._cost_per_hour(zone, 0.0))

    # --- label checks -------------------------------------------------------------------------

    def _zone(self, zone: str | int) -> str:
        if isinstance(zone, int) and not isinstance(zone, bool) and 0 <= zone < len(self.zone_ids):
            return self.zone_ids[zone]
        if zone in self._z:
            return zone  # type: ignore[return-value]
        raise ValueError(f"unknown zone {zone!r}: metric labels come from the scenario's zones only")

    def _population(self, population: str | int) -> str:
        if isinstance(population, int) and not isinstance(population, bool):
            if 0 <= population < len(self.population_ids):
                return self.population_ids[population]
        elif population in self.population_ids:
            return population  # type: ignore[return-value]
        raise ValueError(f"unknown population {population!r}: metric labels come from the scenario only")

    # --- what drivers call --------------------------------------------------------------------

    def observe_request_end(
        self,
        request: Request,
        population: str | int,
        zone: str | int | None,
        ttft_s: float | None,
        e2e_s: float | None,
        itl_samples_s: list[float] | None,
        status: str,
        *,
        generated_tokens: int | None = None,
        queue_s: float | None = None,
        prefill_s: float | None = None,
        decode_s: float | None = None,
    ) -> None:
        """Once per request, when it has ended (completed, failed, rejected or cancelled).

        - `population`, `zone`: ids (or indices) from the scenario; `zone=None` for a request that no
          zone took (status must then be `rejected`; counted under zone `none`).
        - `ttft_s`, `e2e_s`: as the gateway measured them (None when there was no first / last token).
        - `itl_samples_s`: gaps between successive tokens as sent; None derives them as the request's
          TPOT repeated (output tokens − 1) times — exact for the serving model, whose decode steps
          are equal between batch changes.
        - `status`: one of `STATUSES` (`grid.serving.request`): stop, length, error, rejected, cancelled.
        - `generated_tokens`: tokens produced; defaults to `request.output_tokens` for stop/length
          and 0 otherwise.
        - `queue_s`, `prefill_s`, `decode_s`: zone-side phases; default from the request's zone-clock
          timestamps (`admit_s`, `scheduled_s`, `first_token_s`, `finish_s`) when they are set.

        Rejected requests never reached an engine: they count in `grid_requests_total` only. vLLM
        histograms of latency (E2E, TPOT, ITL, decode, inference) take only stop/length requests.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        population_id = self._population(population)
        if zone is None or zone == NO_ZONE:
            if status != REJECTED:
                raise ValueError(f"a request with status {status!r} must name its zone")
            self._requests[population_id, NO_ZONE, REJECTED].inc()
            return
        zone_id = self._zone(zone)
        self._requests[population_id, zone_id, status].inc()
        if status == REJECTED:
            return
        z = self._z[zone_id]
        z["success"][FINISHED_REASON_BY_STATUS[status]].inc()
        completed = status in (STOP, LENGTH)
        if generated_tokens is None:
            generated_tokens = request.output_tokens if completed else 0
        if ttft_s is not None and ttft_s >= 0.0:
            z["ttft"].observe(ttft_s)
            z["prompt_tokens"].inc(request.prompt_tokens)
            z["prompt_hist"].observe(request.prompt_tokens)
            z["cache_queries"].inc(request.prompt_tokens)
            if request.cached_tokens:
                z["cache_hits"].inc(request.cached_tokens)
        if generated_tokens > 0:
            z["generation_tokens"].inc(generated_tokens)
        scheduled = request.scheduled_s >= 0.0
        if queue_s is None and scheduled and request.admit_s >= 0.0:
            queue_s = request.scheduled_s - request.admit_s
        if queue_s is not None:
            z["queue"].observe(queue_s)
        if prefill_s is None and scheduled and request.first_token_s >= 0.0:
            prefill_s = request.first_token_s - request.scheduled_s
        if prefill_s is not None:
            z["prefill"].observe(prefill_s)
        if not completed:
            return
        z["generation_hist"].observe(generated_tokens)
        if e2e_s is not None:
            z["e2e"].observe(e2e_s)
        if decode_s is None and request.first_token_s >= 0.0 and request.finish_s >= 0.0:
            decode_s = request.finish_s - request.first_token_s
        if decode_s is not None:
            z["decode"].observe(decode_s)
            if prefill_s is not None:
                z["inference"].observe(prefill_s + decode_s)
        if ttft_s is not None and e2e_s is not None and generated_tokens > 1:
            tpot = max(0.0, e2e_s - ttft_s) / (generated_tokens - 1)
            z["tpot"].observe(tpot)
            samples = itl_samples_s if itl_samples_s is not None else [tpot] * (generated_tokens - 1)
            observe_many(z["itl"], samples)
            observe_many(z["tpot_legacy"], samples)
        elif itl_samples_s:
            observe_many(z["itl"], itl_samples_s)
            observe_many(z["tpot_legacy"], itl_samples_s)

    def observe_route(self, population: str | int, zone: str | int, decision_s: float, rtt_s: float) -> None:
        """Once per routing decision (retries included): the policy's `choose` time and the round
        trip applied between the population and the chosen zone's region."""
        zone_id = self._zone(zone)
        self._routing_decision.observe(decision_s)
        self._rtt_applied[self._population(population), self.zone_region[zone_id]].observe(rtt_s)

    def observe_zone_report(
        self,
        zone: str | int,
        up: bool,
        running: int,
        waiting: int,
        kv_usage: float,
        utilization: float,
        report_age_s: float,
    ) -> None:
        """Each time the gateway receives (or re-reads) a zone's load report (`ZoneActor.report()`:
        `up`, `running`, `waiting`, `kv_usage`, `utilization`) and the report's age at that moment."""
        zone_id = self._zone(zone)
        z = self._z[zone_id]
        z["up"].set(1 if up else 0)
        z["running"].set(running)
        z["waiting"].set(waiting)
        z["kv"].set(kv_usage)
        z["utilization"].set(utilization)
        z["report_age"].set(report_age_s)
        self._utilization[zone_id] = utilization if up else 0.0

    def observe_report_age(self, zone: str | int, report_age_s: float) -> None:
        """How old the gateway's last load report of `zone` is now (between reports it only grows)."""
        self._z[self._zone(zone)]["report_age"].set(report_age_s)

    def set_zone_up(self, zone: str | int, up: bool) -> None:
        """A zone's health changed outside a report (a fault, an actor that stopped answering)."""
        zone_id = self._zone(zone)
        self._z[zone_id]["up"].set(1 if up else 0)
        if not up:
            self._utilization[zone_id] = 0.0

    def observe_zone_fleet(
        self, zone: str | int, serving: int, warming: int, draining: int, now_s: float, spot: int = 0
    ) -> None:
        """A zone's replicas by state, as its load report gave them (`Zone.counts()`), `spot` of them
        bought as spot (0 when the driver does not know): `grid_zone_replicas{state}` and the cost per
        hour of every replica paid for (warming and draining ones are paid for too) at `now_s`'s tariff."""
        zone_id = self._zone(zone)
        z = self._z[zone_id]
        for state, count in zip(REPLICA_STATES, (serving, warming, draining), strict=True):
            z["replicas"][state].set(count)
        paid = serving + warming + draining
        self._paid[zone_id] = paid - min(spot, paid) * self._spot_discount
        z["cost_per_hour"].set(self._cost_per_hour(zone_id, now_s))

    def _cost_per_hour(self, zone_id: str, now_s: float) -> float:
        factor = tariff_factor(local_hour(self._start_utc, now_s, self._tz[zone_id]))
        return self._paid[zone_id] * self._usd_per_replica_hour[zone_id] * factor

    def observe_scaling(self, zone: str | int, reason: str) -> None:
        """A change of a zone's fleet (`grid.dispatch.sinks.Sink.scaled`), with one of `SCALING_REASONS`."""
        if reason not in SCALING_REASONS:
            raise ValueError(f"unknown scaling reason {reason!r}; one of {', '.join(SCALING_REASONS)}")
        self._z[self._zone(zone)]["scaling"][reason].inc()

    def observe_retry(self, from_zone: str | int, reason: str, to_zone: str | int | None = None) -> None:
        """An attempt at `from_zone` ended with `reason` (one of `RETRY_REASONS`: busy, down, error,
        timeout) and the request is retried; `to_zone` is where the retry goes, if it goes anywhere."""
        if reason not in RETRY_REASONS:
            raise ValueError(f"unknown retry reason {reason!r}; one of {', '.join(RETRY_REASONS)}")
        from_id = self._zone(from_zone)
        self._z[from_id]["retries"][reason].inc()
        if to_zone is not None:
            to_id = self._zone(to_zone)
            if to_id != from_id:
                self.failovers.labels(from_id, to_id).inc()

    def observe_hedge(self, population: str | int, zone: str | int, outcome: str) -> None:
        """A hedge copy of a `population` request sent to `zone` ended with `outcome` (one of
        `HEDGE_OUTCOMES`): `won` (its first token came first; the original was cancelled), `lost` (the
        original's came first, or the request ended before either; the copy was cancelled) or `failed`
        (refused or failed before a first token; the original carried on)."""
        if self.hedges is None:
            raise ValueError("this grid does not hedge: construct GridMetrics with hedging=True")
        if outcome not in HEDGE_OUTCOMES:
            raise ValueError(f"unknown hedge outcome {outcome!r}; one of {', '.join(HEDGE_OUTCOMES)}")
        self._hedges[self._population(population), self._zone(zone), outcome].inc()

    def tick(self, now_s: float) -> None:
        """Accrue cost, energy and carbon from the previous tick to `now_s` (any monotonic clock,
        seconds; the first call only sets the origin). Call it about once a second and before each
        scrape if you can. Per zone, over the interval (the rules of `grid.economics`):

        - cost = GPUs paid for (the replicas `observe_zone_fleet` last reported, spot discounted; the
          scenario's until then) × the region's list price per GPU-hour (busy or idle, as in the report);
        - energy = GPUs × (idle power + (max − idle) × min(1, last reported utilization)); a down
          zone draws idle power;
        - carbon = energy × the region's grid intensity (g per kWh).
        """
        with self._tick_lock:
            last, self._last_tick_s = self._last_tick_s, now_s
            if last is None or now_s <= last:
                if last is not None and now_s < last:
                    self._last_tick_s = last  # a clock that went back: ignore, keep the origin
                return
            dt = now_s - last
            for zone, z in self._z.items():
                economics = self._zone_economics[zone]
                # as ZoneEconomics.cost_usd (GPUs × price per GPU-second × dt), on the GPUs paid for now
                z["cost"].inc(self._paid[zone] * self._gpus_per_replica[zone] * economics.price_usd_per_gpu_s * dt)
                if not economics.gpus:
                    continue
                busy = min(1.0, max(0.0, self._utilization[zone]))
                joules = economics.energy_j(busy, dt)
                z["energy"].inc(joules)
                z["carbon"].inc(economics.carbon_g(joules))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format, without prometheus_client's `*_created` series
        (they would double the series Prometheus stores and the scrape time); serve it with
        `CONTENT_TYPE` at /metrics."""
        return generate_latest(RegistryWithoutCreated(self.registry))

    def metric_names(self) -> set[str]:
        """Every sample name this object can expose (`_total`, `_bucket`, `_sum`, `_count`, … included)."""
        names = set()
        for family in self.registry.collect():
            names.add(family.name)
            for sample in family.samples:
                names.add(sample.name)
        return names
