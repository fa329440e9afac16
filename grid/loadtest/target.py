"""What `grid loadtest` asks the target before a run: the model it serves and its populations.

A load test sends the model the target serves, not the one in its own scenario: `GET /v1/models`
(OpenAI's list, `{"data": [{"id": …}, …]}`) gives it, and an unreachable target or a failing
`/v1/models` is a CLI error (exit 2) before Locust starts. `GET /grid/world` (the gateway's world,
`grid.live.dashboard.world_json`) gives the populations the target knows; each of the load test's
populations sends its own name in `X-Grid-Population` when the target has it, else the name of the
target's population nearest to it (great circle, by the lat/lon both give). A target without
`/grid/world` (a plain vLLM server) gets no population header at all.

The API key for the target comes from `GRID_API_KEY`, else `OPENAI_API_KEY` (what OpenAI clients and
`vllm bench serve` read), and goes with every request (`Authorization: Bearer …`), these two included.
"""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from grid.errors import GridInputError

API_KEY_ENV = ("GRID_API_KEY", "OPENAI_API_KEY")
PROBE_TIMEOUT_S = 10.0
MODELS_PATH = "/v1/models"
WORLD_PATH = "/grid/world"


@dataclass(frozen=True)
class Target:
    """The target as `grid loadtest` will load it."""

    url: str
    model: str  # the model every request names
    models: tuple[str, ...]  # what GET /v1/models listed
    populations: tuple[str, ...] | None  # what GET /grid/world listed; None: no /grid/world
    population_map: dict[str, str | None]  # load-test population → header value (None: no header)
    world_note: str = ""  # why there is no population list, when there is none

    def describe(self) -> str:
        """One line for the run's banner."""
        line = f"target model {self.model} (GET {MODELS_PATH})"
        if self.populations is None:
            return line + f" · {self.world_note}: requests carry no X-Grid-Population header"
        moved = {p: q for p, q in self.population_map.items() if p != q}
        if not moved:
            return line + " · the scenario's populations, all served by the target (GET /grid/world)"
        pairs = ", ".join(f"{p}→{q if q else '(none)'}" for p, q in moved.items())
        return line + f" · populations sent as the target's nearest (GET /grid/world): {pairs}"

    def to_dict(self) -> dict:
        return {
            "url": self.url,
            "model": self.model,
            "models": list(self.models),
            "populations": list(self.populations) if self.populations is not None else None,
            "population_map": dict(self.population_map),
            "world_note": self.world_note,
        }


def api_key_from(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(the API key, the variable it came from): `GRID_API_KEY`, else `OPENAI_API_KEY`; blanks ignored."""
    for name in API_KEY_ENV:
        value = (environ.get(name) or "").strip()
        if value:
            return value, name
    return None, None


def check_url(url: str) -> str:
    """`url` without a trailing slash; GridInputError unless it is http(s)://host[:port][/path]."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise GridInputError(f"--host {url}: expected a URL such as http://127.0.0.1:8000")
    return url.strip().rstrip("/")


def _get(url: str, api_key: str | None, timeout_s: float) -> tuple[int, bytes]:
    """(status, body) of a GET; OSError (URLError, timeouts) when there is no HTTP answer at all."""
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read()
        except OSError:
            body = b""
        return exc.code, body


def _error_text(body: bytes, limit: int = 200) -> str:
    """The message of an OpenAI-shaped error body, else the body's start."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:limit]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:limit]
        if isinstance(err, str):
            return err[:limit]
    return text.strip()[:limit]


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason) or type(exc).__name__


def parse_models(body: bytes) -> tuple[str, ...] | None:
    """The model ids of OpenAI's list shape (`{"data": [{"id": …}, …]}`); None when it is not that."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    ids = [e.get("id") for e in entries if isinstance(e, dict)]
    if len(ids) != len(entries) or not all(isinstance(i, str) and i for i in ids):
        return None
    return tuple(ids)


def choose_model(models: tuple[str, ...], requested: str | None, scenario_model: str, url: str) -> str:
    """`--model` when given (it must be listed), else the scenario's when the target lists it, else
    the first listed (a gateway lists its one served model first, before any MODEL@POPULATION alias)."""
    if requested is not None:
        if requested not in models:
            raise GridInputError(
                f"--model {requested}: the target at {url} does not serve it "
                f"(GET {MODELS_PATH} lists {', '.join(models[:8])}{', …' if len(models) > 8 else ''})"
            )
        return requested
    return scenario_model if scenario_model in models else models[0]


def fetch_models(url: str, api_key: str | None, key_source: str | None, timeout_s: float) -> tuple[str, ...]:
    """The target's models (GET /v1/models); GridInputError naming what failed."""
    where = f"--host {url}: GET {MODELS_PATH}"
    try:
        status, body = _get(url + MODELS_PATH, api_key, timeout_s)
    except TimeoutError:
        raise GridInputError(f"{where}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise GridInputError(f"{where}: cannot reach the target ({_reason(exc)})") from None
    if status in (401, 403):
        hint = (
            f"the API key in {key_source} was refused"
            if key_source
            else "set GRID_API_KEY (or OPENAI_API_KEY) to one of the target's API keys"
        )
        raise GridInputError(f"{where} answered HTTP {status} ({_error_text(body)}): {hint}")
    if status != 200:
        raise GridInputError(f"{where} answered HTTP {status}: {_error_text(body)}")
    models = parse_models(body)
    if models is None:
        excerpt = body.decode("utf-8", "replace").strip()[:120]
        raise GridInputError(f'{where}: not an OpenAI model list ({{"data": [{{"id": …}}]}}): {excerpt!r}')
    if not models:
        raise GridInputError(f"{where}: the target lists no model")
    return models


def parse_world_populations(body: bytes) -> list[dict] | None:
    """`populations` of `GET /grid/world` (entries with a string `population`, maybe `lat`/`lon`);
    None when the body is not that shape."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    pops = data.get("populations") if isinstance(data, dict) else None
    if not isinstance(pops, list):
        return None
    if not all(isinstance(p, dict) and isinstance(p.get("population"), str) for p in pops):
        return None
    return pops


def fetch_world_populations(url: str, api_key: str | None, timeout_s: float) -> tuple[list[dict] | None, str]:
    """(the target's populations, "") or (None, why not): a target without /grid/world is no error."""
    try:
        status, body = _get(url + WORLD_PATH, api_key, timeout_s)
    except OSError as exc:
        return None, f"GET {WORLD_PATH} failed ({_reason(exc)})"
    if status != 200:
        return None, f"no {WORLD_PATH} (HTTP {status})"
    pops = parse_world_populations(body)
    if pops is None:
        return None, f"GET {WORLD_PATH} has no population list"
    if not pops:
        return None, f"GET {WORLD_PATH} lists no population"
    return pops, ""


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


def population_map(scenario, target_populations: list[dict] | None) -> dict[str, str | None]:
    """For each of the scenario's populations, the X-Grid-Population value to send: its own name when
    the target has it, else the target's population nearest to it (great circle; entries without
    numeric lat/lon are not candidates), else None (no header: the target's default population)."""
    if not target_populations:
        return {pid: None for pid in scenario.populations}
    names = {p["population"] for p in target_populations}
    located = []
    for p in target_populations:
        lat, lon = p.get("lat"), p.get("lon")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            located.append((p["population"], float(lat), float(lon)))
    out: dict[str, str | None] = {}
    for pid, pop in scenario.populations.items():
        if pid in names:
            out[pid] = pid
        elif located:
            out[pid] = min(located, key=lambda c: great_circle_km(pop.lat, pop.lon, c[1], c[2]))[0]
        else:
            out[pid] = None
    return out


def probe_target(
    url: str,
    scenario,
    requested_model: str | None = None,
    environ: Mapping[str, str] = os.environ,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> Target:
    """Ask the target at `url` for its model and populations (see the module docstring)."""
    url = check_url(url)
    api_key, key_source = api_key_from(environ)
    models = fetch_models(url, api_key, key_source, timeout_s)
    model = choose_model(models, requested_model, scenario.model.name, url)
    pops, note = fetch_world_populations(url, api_key, timeout_s)
    return Target(
        url=url,
        model=model,
        models=models,
        populations=tuple(p["population"] for p in pops) if pops is not None else None,
        population_map=population_map(scenario, pops),
        world_note=note,
    )
