"""The live grid: one Ray actor per zone driving the serving model in wall time, behind an
OpenAI-compatible FastAPI gateway that routes with the simulator's policies.

- `zone_actor`: the zone actor (the serving model on a wall clock) and its transport
- `cluster`: `ray.init` and actor placement (custom resources `region_<id>` on a cluster)
- `gateway`: the app factory `create_app(scenario, zones, settings)`: routing, retries, deadlines, admission
- `health`: zone health (active checks, outlier ejection, half-open) and the retry budget
- `fault_control`: faults from the admin API and the scenario schedule (a live `zone_down` kills the actor)
- `security`: body size limit (413), API keys with per-key rate limits, the admin token
- `drill`: chaos-drill load and the client tally that reconciles with the gateway's counters
- `openai_api`: request/response shapes and OpenAI-style errors
- `text`: synthetic text and the token definition
- `server`: building the grid and serving it with uvicorn
- `loadgen`, `experiment`: open-loop HTTP load and live-vs-simulated runs (`grid demo`, benchmarks)
- `commands`: `grid up` and `grid demo`
"""
