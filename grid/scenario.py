"""Scenario files: the typed, validated description of a world and an experiment.

A scenario is YAML. It names a `base` (a preset in `regions/` or a path) that it overrides: mappings
merge key by key, everything else replaces. Zones, regions and populations are mappings keyed by id,
so every field has a stable path such as `zones.frankfurt-1.replicas` — the same path `grid sweep
--vary` uses. The whole result is validated once, here; errors name the file, line and field path.
"""

from __future__ import annotations

import copy
import math
import os
import typing
import zoneinfo
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from grid.demand.spec import (  # noqa: F401 - the demand section, re-exported as part of the schema
    Demand,
    Diurnal,
    FlashCrowd,
    SessionApp,
    Sessions,
    Sizes,
    SizeSpec,
    ThinkTime,
    TraceReplay,
)
from grid.errors import GridInputError
from grid.fault_kinds import FaultKind, missing_fields, missing_message
from grid.scaling.spec import Autoscaling, autoscaling_problems
from grid.serving.retry import MAX_RETRIES, RETRY_BUDGET_MIN, RETRY_BUDGET_RATIO
from grid.units import parse_duration_s

PRESETS_DIR = Path(__file__).resolve().parent.parent / "regions"
SCENARIOS_DIR = PRESETS_DIR / "scenarios"
DEFAULT_SCENARIO = "default"

Seconds = Annotated[float, BeforeValidator(parse_duration_s), Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Region(_Strict):
    name: str
    country: str = ""
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    tz: str
    price_usd_per_gpu_hour: float = Field(ge=0)
    carbon_g_per_kwh: float = Field(ge=0)


class Zone(_Strict):
    region: str
    replicas: int = Field(ge=0)
    gpu: str = "h100"
    gpus_per_replica: int = Field(default=1, ge=1)
    max_queue: int = Field(default=2048, ge=0, description="waiting requests beyond this are rejected")


class Population(_Strict):
    name: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    tz: str
    demand_share: float = Field(ge=0)


class Network(_Strict):
    intra_region_rtt_ms: float = Field(default=1.0, ge=0)
    jitter_ratio: float = Field(default=0.05, ge=0, le=10)
    # The least one-way client↔zone delay in both clocks: the live gateway's own path (docs/benchmark-tools.md)
    gateway_hop_ms: float = Field(default=0.0, ge=0, le=1000)  # 0: not modelled (grid.dispatch.settings)
    # The live gateway's event loop: its share busy with no requests (health checks, metrics, polling
    # its zones), CPU per request and per streamed token, and cores. The simulator stretches the hop as
    # the load fills them (grid.dispatch.gateway_stage). Costs 0, 0: not modelled.
    gateway_idle_load: float = Field(default=0.0, ge=0, lt=1)
    gateway_cpu_per_request_ms: float = Field(default=0.0, ge=0, le=1000)
    gateway_cpu_per_token_us: float = Field(default=0.0, ge=0, le=1_000_000)
    gateway_cores: float = Field(default=1.0, gt=0, le=1024)
    population_rtt_ms: dict[str, dict[str, Annotated[float, Field(ge=0)]]]
    region_rtt_ms: dict[str, dict[str, Annotated[float, Field(ge=0)]]]


class GpuProfile(_Strict):
    """Serving speed and memory of one replica (one model on `gpus_per_replica` GPUs).

    How the fields drive the engine: grid/serving/engine.py; what the default values are fitted to:
    regions/default.yaml. `kv_cache_tokens` is the replica's KV budget in tokens (whole blocks of
    `block_tokens` are used); the default profiles' values are fitted, not physical (see there).
    """

    max_num_seqs: int = Field(ge=1)
    max_num_batched_tokens: int = Field(ge=1, description="tokens per engine step (prefill chunks + decodes)")
    kv_cache_tokens: int = Field(ge=1)
    block_tokens: int = Field(default=16, ge=1, description="tokens per KV block (vLLM's block_size)")
    chunked_prefill: bool = Field(
        default=True, description="vLLM V1's chunked prefill; false: prefill steps stall decoding (V0)"
    )
    decode_base_s: float = Field(ge=0)
    decode_per_seq_s: float = Field(ge=0)
    prefill_base_s: float = Field(default=0.0, ge=0)
    prefill_per_token_s: float = Field(ge=0)
    frontend_s: float = Field(default=0.0, ge=0, description="API-server time before the engine sees a request")
    power_idle_w: float = Field(default=100.0, ge=0)
    power_max_w: float = Field(default=700.0, ge=0)

    @model_validator(mode="after")
    def _decode_takes_time(self) -> GpuProfile:
        if self.decode_base_s + self.decode_per_seq_s <= 0:
            raise ValueError("decode_base_s + decode_per_seq_s must be > 0 (a decode step takes time)")
        if self.max_num_batched_tokens < self.max_num_seqs:  # vLLM refuses it too: a step must fit every decode
            raise ValueError("max_num_batched_tokens must be ≥ max_num_seqs")
        if self.kv_cache_tokens < self.block_tokens:
            raise ValueError("kv_cache_tokens must hold at least one block (block_tokens)")
        return self


class Model(_Strict):
    name: str = "Qwen/Qwen3-8B"
    context_tokens: int = Field(default=32768, ge=2)


class Slo(_Strict):
    ttft_s: Seconds = 1.0
    tpot_s: Seconds = 0.1
    e2e_s: Seconds | None = None


class Routing(_Strict):
    policy: str = "latency_aware"
    report_interval_s: Seconds = 0.0
    # Retries (grid.serving.retry): an attempt that fails before its first token is tried again on
    # another zone, at most max_retries times, within Envoy's retry budget. 0 turns retries off.
    max_retries: int = Field(default=MAX_RETRIES, ge=0, description="retries per request, each on another zone")
    retry_budget_ratio: float = Field(
        default=RETRY_BUDGET_RATIO, ge=0, le=1, description="requests retrying at once ≤ this share of those in flight"
    )
    retry_budget_min: int = Field(default=RETRY_BUDGET_MIN, ge=0, description="… or at least this many")
    # Candidate pruning (grid.routing.view.GridView): a decision considers each population's nearest
    # `candidate_zones` zones plus `spill_zones` nearest others with headroom, refreshed every
    # `spill_refresh_s`; 0 considers every zone. The default covers the default world's 9 zones whole.
    candidate_zones: int = Field(default=12, ge=0, description="nearest zones a decision considers (0: all)")
    spill_zones: int = Field(default=4, ge=0, description="other zones with headroom a decision also considers")
    spill_refresh_s: Seconds = Field(default=1.0, gt=0, description="how often the spill picks follow load")


class Fault(_Strict):
    at_s: Seconds
    kind: FaultKind
    duration_s: Seconds | None = None
    zone: str | None = None
    population: str | None = None
    region: str | None = None
    factor: float | None = Field(default=None, gt=0)
    add_ms: float | None = Field(default=None, ge=0)
    replicas: int | None = Field(default=None, ge=1, description="spot_preempt: how many spot replicas are taken")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Fault:
        missing = missing_fields(self)
        if missing:
            raise ValueError(missing_message(self.kind, missing))
        return self


class Scenario(_Strict):
    name: str = "unnamed"
    description: str = ""
    duration_s: Seconds = 3600.0
    seed: int = 0
    model: Model = Model()
    gpus: dict[str, GpuProfile]
    regions: dict[str, Region]
    zones: dict[str, Zone]
    populations: dict[str, Population]
    network: Network
    demand: Demand
    slo: Slo = Slo()
    routing: Routing = Routing()
    autoscaling: Autoscaling = Autoscaling()
    faults: list[Fault] = []


# ---------------------------------------------------------------------------------------------
# Loading: YAML (safe), `base` chains, deep merge, validation with file/line/path in each error.


def preset_names() -> list[str]:
    """Scenario presets shipped in regions/ (the default world) and regions/scenarios/."""
    names = [DEFAULT_SCENARIO] + sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml"))
    return list(dict.fromkeys(names))


def resolve_scenario_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A preset name or a file path → the file; unknown names list the presets."""
    if name_or_path == DEFAULT_SCENARIO:
        return PRESETS_DIR / "default.yaml"
    if name_or_path == "world":
        return PRESETS_DIR / "world.yaml"
    preset = SCENARIOS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    path = Path(name_or_path)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.is_file():
        return path
    raise GridInputError(
        f"no scenario named {name_or_path!r} (no such preset or file); presets: {', '.join(preset_names())}"
    )


def load_scenario(name_or_path: str = DEFAULT_SCENARIO, overrides: dict[str, Any] | None = None) -> Scenario:
    """Load, merge and validate a scenario; `overrides` maps field paths (a.b.c) to values."""
    path = resolve_scenario_path(name_or_path)
    raw, origins = _load_chain(path, seen=())
    for dotted, value in (overrides or {}).items():
        set_path(raw, dotted, value)
        origins[tuple(dotted.split("."))] = ("command line", None)
    return validate_scenario(raw, origins)


def validate_scenario(raw: dict[str, Any], origins: dict[tuple[str, ...], tuple[str, int | None]]) -> Scenario:
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise GridInputError("\n".join(_format_error(err, origins) for err in exc.errors())) from None
    problems = _cross_reference_problems(scenario)
    if problems:
        raise GridInputError("\n".join(_locate(path, origins) + ": " + msg for path, msg in problems))
    return scenario


def set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested mappings; every step but the last must exist, except a section the schema
    has and this scenario leaves out or sets to null (`demand.trace.path=…` on a scenario without a
    trace): it starts empty, and validation says what else it needs."""
    keys = dotted.split(".")
    node: Any = raw
    model: Any = Scenario
    for depth, key in enumerate(keys[:-1]):
        section = _section_model(model, key)
        is_field = not isinstance(model, tuple)  # a model's own field, not an entry of a mapping by id
        # A section, a mapping field, or an entry whose fields all have defaults (autoscaling.zones.<id>).
        creatable = isinstance(section, (type, tuple)) or (is_field and _is_mapping_field(model, key))
        if not is_field:
            creatable = creatable and all(not f.is_required() for f in model[1].model_fields.values())
        if creatable and isinstance(node, dict) and node.get(key) is None:
            node[key] = {}
        model = section
        if not isinstance(node, dict) or key not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "none"
            where = ".".join(keys[: depth + 1])
            raise GridInputError(f"{dotted}: the scenario has no field {where} (known here: {known})")
        node = node[key]
    if not isinstance(node, dict):
        raise GridInputError(f"{dotted}: {'.'.join(keys[:-1])} is not a mapping")
    node[keys[-1]] = value


def _section_model(model: Any, key: str) -> Any:
    """The schema under `key`: a model class for a section, ("entries", class) for a mapping by id
    (whose entries are never created here), or None."""
    if isinstance(model, tuple):
        return model[1]
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
        return None
    annotation = model.model_fields[key].annotation
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        if typing.get_origin(arg) is dict:
            entry = typing.get_args(arg)[1]
            return ("entries", entry) if isinstance(entry, type) and issubclass(entry, BaseModel) else None
    return None


def _is_mapping_field(model: Any, key: str) -> bool:
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
        return False
    annotation = model.model_fields[key].annotation
    return any(typing.get_origin(arg) is dict for arg in (annotation, *typing.get_args(annotation)))


def get_path(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for depth, key in enumerate(dotted.split(".")):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(dotted.split(".")[: depth + 1])
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "none"
            raise GridInputError(f"{dotted}: the scenario has no field {where} (known here: {known})")
        node = node[key]
    return node


def scenario_raw(name_or_path: str) -> tuple[dict[str, Any], dict[tuple[str, ...], tuple[str, int | None]]]:
    """The merged, not yet validated mapping of a scenario, with the origin of each field."""
    return _load_chain(resolve_scenario_path(name_or_path), seen=())


def _load_chain(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], dict]:
    path = path.resolve()
    if path in seen:
        chain = " → ".join(str(p.name) for p in (*seen, path))
        raise GridInputError(f"{path}: scenario bases form a loop: {chain}")
    doc, lines = _read_yaml(path)
    _resolve_trace_path(doc, path)
    base_name = doc.pop("base") if "base" in doc else _implicit_base(path)
    origins = {key: (str(path), line) for key, line in lines.items()}
    if base_name is None:
        return doc, origins
    if not isinstance(base_name, str):
        raise GridInputError(f"{path}:{lines.get(('base',), '?')}: base: must be a preset name or a path")
    base_doc, base_origins = _load_chain(resolve_scenario_path(base_name, path.parent), (*seen, path))
    base_origins.update(origins)
    return _deep_merge(base_doc, doc), base_origins


def _resolve_trace_path(doc: dict[str, Any], path: Path) -> None:
    """A trace path is relative to the file that names it, as `base` is: a scenario and its trace
    move together, whatever the working directory."""
    demand = doc.get("demand")
    trace = demand.get("trace") if isinstance(demand, dict) else None
    if isinstance(trace, dict) and isinstance(trace.get("path"), str):
        trace_path = Path(trace["path"]).expanduser()
        if not trace_path.is_absolute():
            trace["path"] = os.path.normpath(path.parent / trace_path)


def _implicit_base(path: Path) -> str | None:
    """Files without `base` extend the default scenario (`base: null` starts from nothing)."""
    builtin = {(PRESETS_DIR / "default.yaml").resolve(), (PRESETS_DIR / "world.yaml").resolve()}
    return None if path in builtin else DEFAULT_SCENARIO


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GridInputError(f"{path}: cannot read the scenario: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise GridInputError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise GridInputError(f"{path}:1: a scenario must be a mapping of fields, got {type(doc).__name__}")
    lines: dict[tuple[str, ...], int] = {}
    _record_lines(node, (), lines)
    return doc, lines


def _record_lines(node: yaml.Node | None, path: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            _record_lines(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = (*path, str(index))
            lines[key] = item.start_mark.line + 1
            _record_lines(item, key, lines)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _locate(loc: tuple[Any, ...], origins: dict) -> str:
    """`file:line: path` for a field, using the deepest part of the path some file defined."""
    key = tuple(str(part) for part in loc)
    for depth in range(len(key), 0, -1):
        if key[:depth] in origins:
            file, line = origins[key[:depth]]
            where = f"{file}:{line}" if line else file
            return f"{where}: {_dotted(loc)}"
    return f"scenario: {_dotted(loc)}"


def _format_error(err: dict[str, Any], origins: dict) -> str:
    loc = tuple(part for part in err["loc"] if not str(part).startswith("function-"))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    if (
        "input" in err
        and err["type"] not in ("missing", "extra_forbidden")
        and not isinstance(err["input"], dict | list)
    ):
        message += f" (got {err['input']!r})"
    return f"{_locate(loc, origins)}: {message}"


def _cross_reference_problems(s: Scenario) -> list[tuple[tuple[str, ...], str]]:
    """Checks across sections: ids that must exist, tables that must be complete."""
    problems: list[tuple[tuple[str, ...], str]] = []
    regions, pops = set(s.regions), set(s.populations)

    def known(kind: str, names: set[str]) -> str:
        return f"unknown {kind}; known: {', '.join(sorted(names))}"

    for tz_path, tz in [(("regions", k, "tz"), r.tz) for k, r in s.regions.items()] + [
        (("populations", k, "tz"), p.tz) for k, p in s.populations.items()
    ]:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append((tz_path, f"unknown time zone {tz!r} (use an IANA name like Europe/Berlin)"))
    for zone_id, zone in s.zones.items():
        if zone.region not in regions:
            problems.append((("zones", zone_id, "region"), known("region " + repr(zone.region), regions)))
        if zone.gpu not in s.gpus:
            problems.append((("zones", zone_id, "gpu"), known("gpu " + repr(zone.gpu), set(s.gpus))))
    if not s.zones:
        problems.append((("zones",), "the scenario has no zones"))
    if not s.populations:
        problems.append((("populations",), "the scenario has no populations"))
    elif sum(p.demand_share for p in s.populations.values()) <= 0:
        problems.append((("populations",), "demand shares sum to 0: no population sends requests"))
    for pop in pops:
        row = s.network.population_rtt_ms.get(pop)
        if row is None:
            problems.append((("network", "population_rtt_ms"), f"no RTTs for population {pop!r}"))
            continue
        for region in sorted(regions - set(row)):
            problems.append((("network", "population_rtt_ms", pop), f"no RTT to region {region!r}"))
    for pop in sorted(set(s.network.population_rtt_ms) - pops):
        problems.append((("network", "population_rtt_ms", pop), known("population", pops)))
    for a, row in s.network.region_rtt_ms.items():
        for b in row:
            if a not in regions or b not in regions:
                problems.append((("network", "region_rtt_ms", a, b), known("region", regions)))
    for a in regions:
        for b in regions:
            if a < b and region_rtt_ms(s.network, a, b) is None:
                problems.append((("network", "region_rtt_ms"), f"no RTT between {a!r} and {b!r}"))
    for i, crowd in enumerate(s.demand.flash_crowds):
        if crowd.population not in pops:
            problems.append((("demand", "flash_crowds", str(i), "population"), known("population", pops)))
    for i, fault in enumerate(s.faults):
        base = ("faults", str(i))
        if fault.zone is not None and fault.zone not in s.zones:
            problems.append(((*base, "zone"), known("zone " + repr(fault.zone), set(s.zones))))
        if fault.population is not None and fault.population not in pops:
            problems.append(((*base, "population"), known("population " + repr(fault.population), pops)))
        if fault.region is not None and fault.region not in regions:
            problems.append(((*base, "region"), known("region " + repr(fault.region), regions)))
    if s.routing.report_interval_s > 0 and math.isinf(s.routing.report_interval_s):
        problems.append((("routing", "report_interval_s"), "must be finite"))
    return problems + autoscaling_problems(s)


def region_rtt_ms(network: Network, a: str, b: str) -> float | None:
    """RTT between two regions, whichever way round the table lists it."""
    if a == b:
        return network.intra_region_rtt_ms
    row = network.region_rtt_ms.get(a, {})
    if b in row:
        return row[b]
    return network.region_rtt_ms.get(b, {}).get(a)
