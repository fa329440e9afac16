"""Locust against the live grid: one user class per population of the scenario.

    locust -f loadtests/locustfile.py --headless -u 20 -r 20 --run-time 1m --host http://127.0.0.1:8000

Configuration is environment variables (so Locust workers, `grid loadtest` and docker-compose all
pass it the same way):

| variable | meaning (default) |
|---|---|
| `GRID_SCENARIO` | scenario preset or YAML path the users are generated from (`default`) |
| `GRID_SET` | JSON object of scenario overrides, e.g. `{"zones.paris-1.replicas": 2}` |
| `GRID_SHAPE` | `constant`, `diurnal`, `flash_crowd`, `step_ramp`, `outage_drill` (none: plain -u/-r/--run-time) |
| `GRID_MINUTES` | length of a shaped run (5) |
| `GRID_RPS` | open loop at this rate (the shape's scale, see loadtests/shapes.py); unset: closed loop |
| `GRID_USERS` | closed loop with a shape: users at the shape's peak (10) |
| `GRID_GENERATORS` | open-loop generators, one per Locust worker (1) |
| `GRID_SEED`, `GRID_MODEL` | arrivals seed (the scenario's), model name sent (the scenario's) |
| `GRID_POPULATION_MAP` | JSON object: population → `X-Grid-Population` value, null: no header (own name) |
| `GRID_API_KEY` | the target's API key, sent as `Authorization: Bearer <key>` (else `OPENAI_API_KEY`) |

`grid loadtest` sets `GRID_MODEL` and `GRID_POPULATION_MAP` from the target (grid/loadtest/target.py).
| `GRID_THINK_S` | closed-loop think time between a user's requests (0) |
| `GRID_DRAIN_S` | open loop: time after the last arrival for answers to finish (15) |
| `GRID_STEPS`, `GRID_CROWD_POPULATION`, `GRID_CROWD_FACTOR`, `GRID_DRILL_ZONE` | shape options |
| `GRID_ADMIN_TOKEN` | bearer token for the outage drill's admin calls |
| `GRID_RECORDS_DIR` | write one CSV row per request here (`records-<pid>.csv`) |

Each user sends streamed chat completions (`stream_options.include_usage`, `max_tokens` with
`ignore_eos` so the answer is exactly the drawn length, a prompt of the drawn token count) with the
header `X-Grid-Population` (see `GRID_POPULATION_MAP`), and reports TTFT, ITL, TPOT and E2E as their
own entries (loadtests/chat.py).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from locust import FastHttpUser, constant, events, task

from grid.demand.arrivals import size_sampler
from grid.scenario import load_scenario
from loadtests.chat import request_headers, send_chat
from loadtests.shapes import RECORD_FIELDS, SHAPES, build_profile, due_actions, make_load_test_shape

log = logging.getLogger("grid.loadtest")


@dataclass(frozen=True)
class Config:
    scenario: str = "default"
    overrides: tuple = ()
    shape: str | None = None
    minutes: float = 5.0
    rps: float | None = None
    users: int = 10
    generators: int = 1
    seed: int | None = None
    model: str | None = None
    think_s: float = 0.0
    drain_s: float = 15.0
    steps: int = 8
    crowd_population: str | None = None
    crowd_factor: float = 4.0
    drill_zone: str | None = None
    admin_token: str | None = None
    records_dir: str | None = None
    population_map: tuple = ()  # (population, header value or None), from GRID_POPULATION_MAP
    api_key: str | None = field(default=None, repr=False)

    @property
    def open_loop(self) -> bool:
        return self.rps is not None


def load_config(env: dict[str, str]) -> Config:
    """The run's configuration from environment variables (see the module docstring)."""

    def get(name: str, cast=str, default=None):
        value = env.get(name, "").strip()
        if not value:
            return default
        try:
            return cast(value)
        except ValueError:
            raise ValueError(f"{name}={value!r}: expected {cast.__name__}") from None

    overrides = json.loads(env["GRID_SET"]) if env.get("GRID_SET", "").strip() else {}
    if not isinstance(overrides, dict):
        raise ValueError("GRID_SET must be a JSON object of field paths to values")
    shape = get("GRID_SHAPE")
    if shape is not None and shape not in SHAPES:
        raise ValueError(f"GRID_SHAPE={shape!r}: known shapes are {', '.join(SHAPES)}")
    population_map = json.loads(env["GRID_POPULATION_MAP"]) if env.get("GRID_POPULATION_MAP", "").strip() else {}
    names = population_map.values() if isinstance(population_map, dict) else [0]
    if not all(v is None or isinstance(v, str) for v in names):
        raise ValueError("GRID_POPULATION_MAP must be a JSON object of populations to a name or null")
    rps = get("GRID_RPS", float)
    if rps is not None and not rps > 0:
        raise ValueError("GRID_RPS must be > 0")
    return Config(
        scenario=get("GRID_SCENARIO", default="default"),
        overrides=tuple(overrides.items()),
        shape=shape,
        minutes=get("GRID_MINUTES", float, 5.0),
        rps=rps,
        users=get("GRID_USERS", int, 10),
        generators=get("GRID_GENERATORS", int, 1),
        seed=get("GRID_SEED", int),
        model=get("GRID_MODEL"),
        think_s=get("GRID_THINK_S", float, 0.0),
        drain_s=get("GRID_DRAIN_S", float, 15.0),
        steps=get("GRID_STEPS", int, 8),
        crowd_population=get("GRID_CROWD_POPULATION"),
        crowd_factor=get("GRID_CROWD_FACTOR", float, 4.0),
        drill_zone=get("GRID_DRILL_ZONE"),
        admin_token=get("GRID_ADMIN_TOKEN"),
        records_dir=get("GRID_RECORDS_DIR"),
        population_map=tuple(population_map.items()),
        api_key=get("GRID_API_KEY") or get("OPENAI_API_KEY"),
    )


def population_headers(population_ids, config: Config) -> dict[str, dict[str, str]]:
    """Each population's request headers: `X-Grid-Population` as GRID_POPULATION_MAP says (its own
    name when the map does not mention it; no header for null) and the API key, if any."""
    mapped = dict(config.population_map)
    return {pid: request_headers(mapped.get(pid, pid), config.api_key) for pid in population_ids}


def population_weights(scenario) -> dict[str, int]:
    """Integer Locust weights proportional to demand shares (at least 1 for a population that sends)."""
    total = sum(p.demand_share for p in scenario.populations.values())
    return {
        pid: max(1, round(1000 * p.demand_share / total))
        for pid, p in scenario.populations.items()
        if p.demand_share > 0
    }


class Records:
    """One CSV row per request of this Locust process (a flat record, like the simulator's)."""

    def __init__(self, directory: str | None) -> None:
        self.t0 = time.perf_counter()
        self._file = None
        self._writer = None
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._file = open(Path(directory) / f"records-{os.getpid()}.csv", "w", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._file)
            self._writer.writerow(RECORD_FIELDS)

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def add(self, t_s: float, outcome, late_s: float = math.nan) -> None:
        if self._writer is None:
            return

        def fmt(x: float) -> str:
            return "" if x != x else f"{x:.6f}"

        self._writer.writerow(
            (
                f"{t_s:.6f}",
                outcome.population,
                outcome.status,
                int(outcome.ok),
                fmt(outcome.ttft_s),
                fmt(outcome.tpot_s),
                fmt(outcome.e2e_s),
                outcome.output_tokens,
                fmt(late_s),
            )
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = self._writer = None


CONFIG = load_config(dict(os.environ))
SCENARIO = load_scenario(CONFIG.scenario, dict(CONFIG.overrides))
MODEL = CONFIG.model or SCENARIO.model.name
SEED = SCENARIO.seed if CONFIG.seed is None else CONFIG.seed
SIZES = size_sampler(SCENARIO.demand.sizes)
RECORDS = Records(CONFIG.records_dir)
HEADERS = population_headers(SCENARIO.populations, CONFIG)


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    RECORDS.start()


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    RECORDS.close()


class PopulationUser(FastHttpUser):
    """Closed loop: send a request, wait for the whole answer, think `GRID_THINK_S`, repeat."""

    abstract = True
    population = ""
    wait_time = constant(CONFIG.think_s)
    network_timeout = 300.0
    _ids = itertools.count()

    def on_start(self) -> None:
        self.rng = np.random.default_rng([SEED, os.getpid(), next(self._ids)])

    @task
    def chat(self) -> None:
        prompt, output = SIZES(self.rng, 1)
        sent_s = time.perf_counter() - RECORDS.t0
        seed = int(self.rng.integers(1 << 31))
        outcome = send_chat(
            self, self.population, int(prompt[0]), int(output[0]), MODEL, seed, HEADERS[self.population]
        )
        RECORDS.add(sent_s, outcome)


def _user_classes() -> dict[str, type]:
    classes = {}
    for pid, weight in population_weights(SCENARIO).items():
        name = "".join(part.capitalize() for part in pid.replace("-", "_").split("_")) + "User"
        classes[name] = type(name, (PopulationUser,), {"population": pid, "weight": weight, "__module__": __name__})
    return classes


# --- the outage drill's admin calls (played by the shape: once, on the master) -------------------


def play_admin(environment, action, token: str | None) -> None:
    """POST one drill action to the gateway's admin API; report it as an `ADMIN` Locust entry."""
    url = environment.host.rstrip("/") + action.path
    started = time.perf_counter()
    error = None
    length = 0
    if not token:
        error = RuntimeError("GRID_ADMIN_TOKEN is not set: the drill cannot call the admin API")
    else:
        request = urllib.request.Request(
            url,
            data=json.dumps(action.body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                length = len(response.read())
        except urllib.error.HTTPError as exc:
            error = RuntimeError(f"HTTP {exc.code} from {action.path}: {exc.read()[:200]!r}")
        except OSError as exc:
            error = exc
    log.warning("outage drill: %s at t=%.1f s → %s", action.label, action.at_s, error or "ok")
    environment.events.request.fire(
        request_type="ADMIN",
        name=action.label,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=length,
        exception=error,
        context={},
    )


def _make_shape(profile):
    token = CONFIG.admin_token

    def on_tick(shape, t_prev: float, t_now: float) -> None:
        for action in due_actions(profile.actions, t_prev, t_now):
            play_admin(shape.runner.environment, action, token)

    users = CONFIG.generators if CONFIG.open_loop else CONFIG.users
    return make_load_test_shape(profile, CONFIG.open_loop, users, CONFIG.drain_s, on_tick if profile.actions else None)


def _build_module_classes() -> dict[str, type]:
    """The classes Locust discovers: population users (closed loop) or the open-loop generator, and
    the shape when one is asked for (a LoadTestShape in the module always takes over -u/-r)."""
    shape = CONFIG.shape or ("constant" if CONFIG.open_loop else None)
    out: dict[str, type] = {}
    if shape is None:
        return _user_classes()
    profile = build_profile(
        SCENARIO,
        shape,
        CONFIG.minutes * 60.0,
        CONFIG.rps if CONFIG.open_loop else 1.0,
        n_steps=CONFIG.steps,
        crowd_population=CONFIG.crowd_population,
        crowd_factor=CONFIG.crowd_factor,
        drill_zone=CONFIG.drill_zone,
    )
    if CONFIG.open_loop:
        from loadtests.openloop import configure

        out["OpenLoopUser"] = configure(profile, SIZES, MODEL, SEED, CONFIG.drain_s, RECORDS.add, HEADERS)
    else:
        out.update(_user_classes())
    out["GridShape"] = _make_shape(profile)
    return out


globals().update(_build_module_classes())
