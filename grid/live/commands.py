"""`grid up` and `grid demo` (wired into grid/cli.py): each takes an argparse.Namespace, returns an exit code."""

from __future__ import annotations

import json
import os
import sys

from grid.errors import GridInputError
from grid.live.gateway import GatewaySettings
from grid.scenario import DEFAULT_SCENARIO, load_scenario

DEMO_SCENARIO = "demo"  # regions/scenarios/demo.yaml: the default world with a fleet 2 cores can fill live
DEMO_HTML = "grid-demo.html"
DEMO_STREAM_INTERVAL_S = 0.05  # token chunks every 50 ms: ~2.5x fewer SSE events than `grid up` (20 ms) on 2 cores


def _arg(args, name: str, default=None):
    value = getattr(args, name, None)
    return default if value is None else value


def run_overrides(args) -> dict:
    """`--set FIELD=VALUE` pairs, with `--policy` and `--seed` as the scenario fields they override."""
    overrides = dict(_arg(args, "overrides", []))
    if _arg(args, "policy") is not None:
        overrides["routing.policy"] = args.policy
    if _arg(args, "seed") is not None:
        overrides["seed"] = args.seed
    return overrides


SECRET_ENV_VARS = ("GRID_ADMIN_TOKEN", "GRID_API_KEYS")


def take_secrets(environ=os.environ) -> tuple[str | None, str | None]:
    """(admin token, API keys text) from `environ`, removed from it so no process started later
    (Ray's GCS, raylet, workers) inherits them; an unset or empty variable reads None."""
    admin_token, api_keys = (environ.pop(name, None) or None for name in SECRET_ENV_VARS)
    return admin_token, api_keys


def up_settings(args, scenario, admin_token: str | None, api_keys: str | None) -> GatewaySettings:
    """`grid up`'s gateway settings from its arguments and secrets; GridInputError for bad API keys
    (`GRID_API_KEYS`: `KEY` or `KEY=POPULATION` entries, populations of `scenario`)."""
    from grid.live.security import check_key_populations, parse_api_keys

    try:
        keys = parse_api_keys(api_keys)  # unset: inference is open
        check_key_populations(keys, scenario.populations)
    except ValueError as exc:
        raise GridInputError(f"GRID_API_KEYS: {exc}") from None
    autoscaler = _arg(args, "autoscaler")
    if autoscaler is not None:  # refused before Ray starts (exit 2), not halfway through start-up
        from grid.scaling.registry import autoscaler_class

        autoscaler_class(autoscaler)
    return GatewaySettings(
        default_population=_arg(args, "default_population"),
        admin_token=admin_token,  # unset: no admin endpoints
        api_keys=keys,
        drain_grace_s=float(_arg(args, "drain_grace_s", GatewaySettings.drain_grace_s)),
        keep_alive_s=float(_arg(args, "keep_alive_s", GatewaySettings.keep_alive_s)),
        list_model_aliases=bool(_arg(args, "list_model_aliases", False)),
        stream_chunk_tokens=int(_arg(args, "stream_chunk_tokens", GatewaySettings.stream_chunk_tokens)),
        autoscaler=autoscaler,  # None: the scenario's autoscaling.policy
    )


def up(args) -> int:
    """Serve the live grid on HOST:PORT until SIGINT/SIGTERM, then stop Ray cleanly."""
    from grid.live.drain import DrainingServer
    from grid.live.server import build_live_grid, run_async, uvicorn_config

    scenario = load_scenario(_arg(args, "scenario", DEFAULT_SCENARIO), run_overrides(args))
    host, port = _arg(args, "host", "127.0.0.1"), int(_arg(args, "port", 8000))
    admin_token, api_keys = take_secrets()  # before Ray starts: none of its processes inherits them
    settings = up_settings(args, scenario, admin_token, api_keys)
    grid = build_live_grid(scenario, settings, ray_address=_arg(args, "ray_address"))
    try:
        gateway = grid.gateway
        placement = "by region resource" if grid.zones.placed_by_region else "local"
        print(
            f"grid up: scenario {scenario.name} · policy {gateway.policy.name} · {len(grid.zones.actors)} zone actors "
            f"({placement}) · model {scenario.model.name}\n"
            f"  OpenAI API on http://{host}:{port}/v1 · zones http://{host}:{port}/grid/zones · "
            f"metrics http://{host}:{port}/metrics · Ctrl-C or SIGTERM drains ({settings.drain_grace_s:g} s), "
            "then stops\n"
            f"  admin API {'on (GRID_ADMIN_TOKEN)' if settings.admin_token else 'off (set GRID_ADMIN_TOKEN)'} · "
            f"API keys {len(settings.api_keys) or 'off (set GRID_API_KEYS)'} · "
            f"keep-alive {settings.keep_alive_s:g} s · autoscaler {gateway.fleet.controller.policy.name}",
            file=sys.stderr,
            flush=True,
        )
        server = DrainingServer(uvicorn_config(grid.app, host, port), gateway.drain, settings.drain_grace_s)
        run_async(server.serve())
    finally:
        grid.close()
        print("grid up: stopped", file=sys.stderr)
    return 0


def demo(args) -> int:
    """The demo world (regions/scenarios/demo.yaml) live beside the simulator: a compressed evening
    with a region failing in its peak, a timeline every 10 s, the summary and an HTML report."""
    from pathlib import Path

    from grid.demo.run import run_demo
    from grid.live.experiment import run_simulated

    scenario = load_scenario(_arg(args, "scenario", DEMO_SCENARIO), run_overrides(args))
    duration_s = float(_arg(args, "duration_s", scenario.duration_s))
    rate_scale = float(_arg(args, "rate_scale", 1.0))
    seed = int(_arg(args, "seed", scenario.seed))
    if duration_s <= 0 or rate_scale <= 0:
        raise GridInputError("demo: --duration and --rate-scale must be > 0")
    if bool(_arg(args, "json", False)):
        from grid.live.experiment import run_live

        log = lambda *a, **k: print(*a, file=sys.stderr, flush=True)  # noqa: E731
        live = run_live(scenario, None, duration_s, rate_scale, seed, stream_interval_s=DEMO_STREAM_INTERVAL_S, log=log)
        sim = run_simulated(scenario, None, duration_s, rate_scale, seed)
        print(json.dumps({"live": live.report.to_dict(), "simulated": sim.to_dict(), "client": live.client}, indent=2))
        return 0
    html = _arg(args, "html", DEMO_HTML)
    print(
        f"grid demo: scenario {scenario.name}, {duration_s:.0f} s of open-loop load "
        f"({scenario.demand.rate_rps * scenario.demand.scale * rate_scale:.1f} req/s daily mean, the day "
        f"{scenario.demand.day_speed:g}× faster) from {len(scenario.populations)} populations, seed {seed}",
        flush=True,
    )
    records = _arg(args, "records")
    if records:
        try:
            open(records, "w").close()
        except OSError as exc:
            raise GridInputError(f"{records}: cannot write the records file: {exc.strerror}") from None
    run_demo(
        scenario, None, duration_s, rate_scale, seed, Path(html) if html else None, DEMO_STREAM_INTERVAL_S,
        out=lambda *a: print(*a, flush=True), records_path=Path(records) if records else None,
    )  # fmt: skip
    return 0
