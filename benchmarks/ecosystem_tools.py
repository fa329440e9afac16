"""The ecosystem's LLM benchmark tools against `grid up`, beside `/metrics` and the simulator (issue 14, item 6).

`grid up` runs on a loopback port in its own process. Each tool in turn (guidellm, then inference-perf)
offers the same load: a constant rate of requests with fixed prompt and output sizes (`ignore_eos`),
streamed. Around each tool's run the script scrapes `/metrics` and takes the deltas of the vLLM
histograms `vllm:time_to_first_token_seconds`, `vllm:inter_token_latency_seconds` and
`vllm:e2e_request_latency_seconds` (p50 interpolated within the bucket as PromQL's `histogram_quantile`
does, and the exact mean from `_sum`/`_count`). The simulator then runs the same arrivals (evenly
spaced, the tool's count, from the gateway's default population) with the prompt and output sizes the
gateway counted. One table: TTFT, ITL and E2E p50 per source, with ratios.

The gateway's own hop: on 2 cores the live gateway's path to a zone (HTTP intake and routing, then a
Ray call) and back (a Ray hop) takes ≈1–1.5 ms each way, more than London's 1 ms half RTT to its zone.
`grid up` and the simulator both run with `network.gateway_hop_ms` = `--gateway-hop-ms` (1.5, measured:
docs/benchmark-tools.md), so neither leg is shorter than that in either clock (0: not modelled).

What each source calls ITL:
- guidellm `inter_token_latency_ms`: per request (last token − first token)/(output tokens − 1), median
  over requests (vLLM's TPOT);
- inference-perf `inter_token_latency`: every gap between streamed chunks, pooled, median;
- `/metrics` `vllm:inter_token_latency_seconds`: every gap between tokens as the gateway sent them, pooled;
- the simulator: TPOT per request (its decode steps are equal between batch changes).

Needs the tools' venvs and the offline tokenizer: `benchmarks/tools/setup.sh` (docs/benchmark-tools.md).

    .venv/bin/python benchmarks/ecosystem_tools.py                       # 4 req/s × 60 s per tool, ~3 min
    .venv/bin/python benchmarks/ecosystem_tools.py --rate 2 --duration-s 20 --tools guidellm
    .venv/bin/python benchmarks/ecosystem_tools.py --host http://127.0.0.1:8000   # a grid already up

Exit 1 when a tool fails or a figure misses ±10% at p50 (figures whose /metrics bucket is too coarse
to tell are reported, with their exact means compared instead).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.demand.arrivals import ArrivalChunk  # noqa: E402
from grid.live.server import free_port  # noqa: E402
from grid.loadtest.cli import GRID_START_TIMEOUT_S, stop_process  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402
from grid.sim.simulator import Simulation  # noqa: E402
from grid.world import build_world  # noqa: E402

TOOLS_DIR = Path(os.environ.get("GRID_TOOLS_DIR", ROOT / ".venv-tools"))
TOKENIZER_SCRIPT = ROOT / "benchmarks" / "tools" / "qwen_tokenizer.py"
TOOLS = ("guidellm", "inference-perf")
TOLERANCE = 0.10  # |a/b − 1| at p50 (issue 14, item 6)
METRICS = ("ttft", "itl", "e2e")
FAMILIES = {
    "ttft": "vllm:time_to_first_token_seconds",
    "itl": "vllm:inter_token_latency_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
}
# The tools must never reach for the Hugging Face hub (unreachable here: each attempt is a time-out).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
STARTUP_ALLOWANCE_S = 150.0  # a tool's own start (imports, tokenizer, data generation) on 2 busy cores
# The gateway's own one-way hop to and from a zone actor, modelled in both clocks (`network.gateway_hop_ms`;
# the scenario's default is 0). Measured on the 2-core machine at 4 req/s from London (docs/benchmark-tools.md):
# intake + routing before the submit 0.9–1.1 ms mean (p90 1.2–1.4), the Ray submit round trip 2.2–2.3 ms p50.
GATEWAY_HOP_MS = 1.5
# inference-perf's `load.num_workers` (its default: the CPU count). 1, the fewest that holds the schedule: 0
# sends from its main process, which also parses every stream, and at 4 req/s sent 5.5 ms late (median; p99
# 26 ms) and dropped the last request; 1 worker sent 0.3 ms late (p99 11 ms). Either way the tool took 2–12%
# of one core while sending (docs/benchmark-tools.md): it does not load the machine.
INFERENCE_PERF_WORKERS = 1


def tool_executable(tool: str) -> Path:
    return TOOLS_DIR / tool / "bin" / tool


def tokenizer_dir() -> Path:
    """The offline Qwen3 tokenizer directory, built now (from the dashscope wheel) if it is missing."""
    out = TOOLS_DIR / "qwen3-tokenizer"
    if not (out / "SOURCE.json").is_file():
        python = next((p for t in TOOLS if (p := TOOLS_DIR / t / "bin" / "python").is_file()), None)
        if python is None:
            raise SystemExit("no tools venv to build the tokenizer with: run benchmarks/tools/setup.sh")
        subprocess.run([str(python), str(TOKENIZER_SCRIPT), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


# --- the load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What each tool offers: `requests` at a constant `rate_rps`, fixed sizes, streamed."""

    rate_rps: float
    duration_s: float
    prompt_tokens: int
    output_tokens: int

    @property
    def requests(self) -> int:
        return max(1, round(self.rate_rps * self.duration_s))


@dataclass
class Figures:
    """p50 and mean (s) of TTFT, ITL and E2E from one source; `bounds` (/metrics only): the bucket of each p50."""

    n: int
    p50: dict[str, float]
    mean: dict[str, float]
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


# --- the tools ------------------------------------------------------------------------------------


def guidellm_command(url: str, model: str, load: Load, tokenizer: Path, out: Path) -> list[str]:
    """`guidellm run` (0.8's CLI: key=value groups) for the load; its JSON report goes to out/guidellm.json."""
    return [
        str(tool_executable("guidellm")), "run",
        "--backend", f"kind=openai_http,target={url},model={model}",
        "--profile", f"kind=constant,rate={load.rate_rps:g}",
        # max_requests, not max_duration: every request runs to its end (a duration cuts the last ones off)
        "--constraint", f"kind=max_requests,count={load.requests}",
        "--tokenizer", f"kind=hf_auto,model={tokenizer}",
        "--data", f"kind=synthetic_text,prompt_tokens={load.prompt_tokens},output_tokens={load.output_tokens}",
        "--output", f"kind=json,path={out / 'guidellm.json'}",
        "--disable-console-interactive",
    ]  # fmt: skip


def guidellm_env() -> dict[str, str]:
    # guidellm spawns up to 10 worker processes; one is plenty for a few req/s and leaves the cores to the grid
    return {**OFFLINE_ENV, "GUIDELLM__MAX_WORKER_PROCESSES": "1"}


def read_guidellm(out: Path) -> Figures:
    bench = json.loads((out / "guidellm.json").read_text())["benchmarks"][0]
    m = bench["metrics"]

    def stat(name: str, scale: float) -> tuple[float, float]:
        s = m[name]["successful"]
        return s["median"] * scale, s["mean"] * scale

    ttft, itl = stat("time_to_first_token_ms", 1e-3), stat("inter_token_latency_ms", 1e-3)
    e2e = stat("request_latency", 1)
    totals = m["request_totals"]
    return Figures(
        n=int(totals["successful"]),
        p50={"ttft": ttft[0], "itl": itl[0], "e2e": e2e[0]},
        mean={"ttft": ttft[1], "itl": itl[1], "e2e": e2e[1]},
        extra={
            "errored": int(totals["errored"]),
            "incomplete": int(totals["incomplete"]),
            "prompt_tokens_p50": m["prompt_token_count"]["successful"]["median"],
            "output_tokens_p50": m["output_token_count"]["successful"]["median"],
            "tpot_p50_s": m["time_per_output_token_ms"]["successful"]["median"] * 1e-3,
        },
    )


def inference_perf_config(
    url: str, model: str, load: Load, tokenizer: Path, out: Path, workers: int = INFERENCE_PERF_WORKERS
) -> dict:
    """inference-perf's config: `completion` API with `random` data (its `random` and `synthetic`
    generators serve the completion API only; `chat` needs `shared_prefix`), a constant-rate stage,
    sent by `workers` worker processes (0: from its main process)."""

    def fixed(n: int) -> dict:
        return {"min": n, "max": n, "mean": n, "std_dev": 0}

    return {
        "api": {"type": "completion", "streaming": True},
        "data": {
            "type": "random",
            "input_distribution": fixed(load.prompt_tokens),
            "output_distribution": fixed(load.output_tokens),
        },
        "load": {
            "type": "constant",
            "stages": [{"rate": load.rate_rps, "duration": max(1, round(load.duration_s))}],
            "num_workers": workers,  # its default is the CPU count: processes that share the grid's 2 cores
            "base_seed": 1,
        },
        "server": {"type": "vllm", "model_name": model, "base_url": url, "ignore_eos": True},
        "tokenizer": {"pretrained_model_name_or_path": str(tokenizer)},
        "report": {
            "request_lifecycle": {"summary": True, "per_stage": False, "per_request": False},
            "prometheus": None,  # it would query a Prometheus server; this script scrapes /metrics itself
        },
        "storage": {"local_storage": {"path": str(out / "inference-perf")}},
    }


def inference_perf_command(config_path: Path) -> list[str]:
    return [str(tool_executable("inference-perf")), "--config_file", str(config_path)]


def read_inference_perf(out: Path) -> Figures:
    summary = json.loads((out / "inference-perf" / "summary_lifecycle_metrics.json").read_text())
    ok = summary["successes"]
    lat = ok["latency"]

    def stat(name: str) -> tuple[float, float]:
        return lat[name]["median"], lat[name]["mean"]

    ttft, itl, e2e = stat("time_to_first_token"), stat("inter_token_latency"), stat("request_latency")
    failures = summary.get("failures") or {}
    delay = (summary.get("load_summary") or {}).get("schedule_delay") or {}  # sent − scheduled, s
    return Figures(
        n=int(ok["count"]),
        p50={"ttft": ttft[0], "itl": itl[0], "e2e": e2e[0]},
        mean={"ttft": ttft[1], "itl": itl[1], "e2e": e2e[1]},
        extra={
            "failures": int(failures.get("count", 0) or 0),
            "prompt_tokens_p50": (ok.get("prompt_tokens") or {}).get("median"),
            "output_tokens_p50": (ok.get("output_tokens") or {}).get("median"),
            "token_count_mismatches": ok.get("token_count_mismatches"),  # its count vs the server's usage
            "tpot_p50_s": lat["time_per_output_token"]["median"],
            "schedule_delay_p50_s": delay.get("median"),
            "schedule_delay_p99_s": delay.get("p99"),
        },
    )


def run_tool(cmd: list[str], env: dict[str, str], log_path: Path, timeout_s: float) -> tuple[int, float, float]:
    """Run a tool in its own process group (guidellm spawns workers); (exit code, seconds, CPU seconds of
    the tool and the processes it reaped). On a time-out the whole group is killed and the code is -9."""
    started = time.monotonic()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    # PYTHONDONTWRITEBYTECODE (set on these machines) dropped: what a run imports is compiled once, not every run
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**base, **env}, cwd=log_path.parent,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            code = -9
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return code, time.monotonic() - started, cpu_s


# --- /metrics -------------------------------------------------------------------------------------


@dataclass
class Histogram:
    """One histogram family summed over its series: cumulative counts per upper bound, sum, count."""

    buckets: dict[float, float]
    sum: float
    count: float

    def minus(self, before: Histogram) -> Histogram:
        return Histogram(
            {le: c - before.buckets.get(le, 0.0) for le, c in self.buckets.items()},
            self.sum - before.sum,
            self.count - before.count,
        )

    def quantile(self, q: float) -> tuple[float, float, float]:
        """(value, bucket lower bound, upper bound) as PromQL's histogram_quantile: linear within the
        bucket holding rank q·count; the +Inf bucket answers its lower bound."""
        if self.count <= 0:
            return math.nan, math.nan, math.nan
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le in sorted(self.buckets):
            cumulative = self.buckets[le]
            if cumulative >= rank:
                if math.isinf(le):
                    return lower, lower, le
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0), lower, le
            lower, below = le, cumulative
        return math.nan, math.nan, math.nan


def scrape(url: str) -> dict[str, Histogram | float]:
    """The vLLM latency histograms and the token counters of /metrics, summed over zones and models."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    hists: dict[str, Histogram | float] = {}
    wanted = set(FAMILIES.values()) | {"vllm:request_prompt_tokens", "vllm:request_generation_tokens"}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        h = Histogram({}, 0.0, 0.0)
        for s in family.samples:
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                h.buckets[le] = h.buckets.get(le, 0.0) + s.value
            elif s.name.endswith("_sum"):
                h.sum += s.value
            elif s.name.endswith("_count"):
                h.count += s.value
        hists[family.name] = h
    return hists


def metrics_figures(before: dict, after: dict) -> Figures:
    p50, mean, bounds = {}, {}, {}
    for key, name in FAMILIES.items():
        delta = after[name].minus(before[name])
        value, lo, hi = delta.quantile(0.5)
        p50[key], bounds[key] = value, (lo, hi)
        mean[key] = delta.sum / delta.count if delta.count else math.nan
    prompt = after["vllm:request_prompt_tokens"].minus(before["vllm:request_prompt_tokens"])
    generated = after["vllm:request_generation_tokens"].minus(before["vllm:request_generation_tokens"])
    e2e = after[FAMILIES["e2e"]].minus(before[FAMILIES["e2e"]])
    return Figures(
        n=int(e2e.count),
        p50=p50,
        mean=mean,
        bounds=bounds,
        extra={
            "ttft_count": int(after[FAMILIES["ttft"]].count - before[FAMILIES["ttft"]].count),
            "itl_samples": int(after[FAMILIES["itl"]].count - before[FAMILIES["itl"]].count),
            "prompt_tokens_mean": prompt.sum / prompt.count if prompt.count else math.nan,
            "output_tokens_mean": generated.sum / generated.count if generated.count else math.nan,
        },
    )


# --- the simulator --------------------------------------------------------------------------------


def hop_overrides(gateway_hop_ms: float) -> dict[str, float]:
    """The scenario fields both clocks run with: the gateway's hop (`grid up --set`, `load_scenario`)."""
    return {"network.gateway_hop_ms": gateway_hop_ms}


def simulate(
    scenario_name: str,
    population_id: str | None,
    n: int,
    rate_rps: float,
    prompt_tokens: int,
    output_tokens: int,
    gateway_hop_ms: float = GATEWAY_HOP_MS,
) -> Figures:
    """The simulator on the tool's load: `n` arrivals 1/rate apart from the gateway's default population
    (the tools name none: `grid up --default-population`, else the scenario's first, as grid.live.intake
    picks it), fixed sizes, the gateway's hop as `grid up` had it; run until every request has ended."""
    scenario = load_scenario(scenario_name, hop_overrides(gateway_hop_ms))
    population_ids = build_world(scenario).population_ids
    population = population_ids.index(population_id) if population_id else 0
    arrival_s = np.arange(n, dtype=float) / rate_rps
    chunk = ArrivalChunk(
        arrival_s,
        np.full(n, population, dtype=np.int64),
        np.full(n, prompt_tokens, dtype=np.int64),
        np.full(n, output_tokens, dtype=np.int64),
    )

    def arrivals(rng: np.random.Generator):
        return iter([chunk])

    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "records.csv"
        tail_s = 120.0  # past the last arrival, so that every request ends inside the run
        Simulation(scenario, None, scenario.seed, n / rate_rps + tail_s, records_path=records, arrivals=arrivals).run()
        rows = [r for r in _csv_rows(records) if r["status"] in ("stop", "length")]
    cols = {"ttft": "ttft_s", "itl": "tpot_s", "e2e": "e2e_s"}
    values = {k: np.array([float(r[c]) for r in rows if r[c]]) for k, c in cols.items()}
    return Figures(
        n=len(rows),
        p50={k: float(np.median(v)) if len(v) else math.nan for k, v in values.items()},
        mean={k: float(v.mean()) if len(v) else math.nan for k, v in values.items()},
        extra={"population": population_ids[population], "prompt_tokens": prompt_tokens},
    )


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- comparison -----------------------------------------------------------------------------------


def rel(a: float, b: float) -> float:
    return a / b - 1.0 if b and b == b and a == a else math.nan


def bucket_too_coarse(value: float, bounds: tuple[float, float]) -> bool:
    """A /metrics p50 interpolated in a bucket wider than ±TOLERANCE around it cannot show ±10% agreement."""
    lo, hi = bounds
    return value != value or math.isinf(hi) or (hi - lo) > 2 * TOLERANCE * value


def checks_for(tool: str, client: Figures, metrics: Figures, sim: Figures) -> dict[str, bool | None]:
    """Pass/fail per figure. At p50 the tool vs the simulator, and /metrics vs both; a /metrics p50 whose
    bucket is too coarse to tell ±10% is not checked (None): instead the tool's p50 must fall in that
    bucket, and the exact means (/metrics _sum/_count, the tool's mean) must agree within ±10%."""
    out: dict[str, bool | None] = {}
    for k in METRICS:
        out[f"{tool} {k} p50 vs simulator"] = abs(rel(client.p50[k], sim.p50[k])) <= TOLERANCE
        coarse = bucket_too_coarse(metrics.p50[k], metrics.bounds[k])
        for other, fig in (("simulator", sim), (tool, client)):
            out[f"/metrics {k} p50 vs {other}"] = None if coarse else abs(rel(metrics.p50[k], fig.p50[k])) <= TOLERANCE
        lo, hi = metrics.bounds[k]
        out[f"{tool} {k} p50 in the /metrics p50's bucket"] = lo < client.p50[k] <= hi
        out[f"/metrics {k} mean vs {tool}"] = abs(rel(metrics.mean[k], client.mean[k])) <= TOLERANCE
    return out


def format_table(load: Load, results: dict[str, dict], population: str) -> str:
    head = f"{'p50 ms':<18}{'n':>5}" + "".join(f"{k.upper():>11}{'vs sim':>9}" for k in METRICS)
    lines = [
        f"constant {load.rate_rps:g} req/s, {load.requests} requests per tool, prompt {load.prompt_tokens} "
        f"tokens (+8 of Qwen3's chat template on chat), output {load.output_tokens} (ignore_eos), streamed, "
        f"population {population}",
        head,
    ]
    for tool, r in results.items():
        if "error" in r:
            lines.append(f"{tool:<18}error: {r['error']}")
            continue
        sim: Figures = r["sim"]
        for source, label in (("client", tool), ("metrics", "  /metrics"), ("sim", "  simulator")):
            fig: Figures = r[source]
            row = f"{label:<18}{fig.n:>5}"
            for k in METRICS:
                star = "*" if source == "metrics" and bucket_too_coarse(fig.p50[k], fig.bounds[k]) else " "
                ratio = "" if source == "sim" else f"{rel(fig.p50[k], sim.p50[k]) * 100:+.1f}%"
                row += f"{fig.p50[k] * 1000:>10.{1 if k != 'itl' else 2}f}{star}{ratio:>9}"
            lines.append(row)
        c, m = r["client"], r["metrics"]
        row = f"{'  tool vs /metrics':<18}{'':>5}"
        for k in METRICS:
            row += f"{'':>11}{rel(c.p50[k], m.p50[k]) * 100:>+8.1f}%"
        lines.append(row)
        lines.append(
            f"{'  means (exact)':<18}{'':>5}"
            + "".join(
                f"{'':>2}{c.mean[k] * 1000:.{1 if k != 'itl' else 2}f}/{m.mean[k] * 1000:.{1 if k != 'itl' else 2}f}"
                f"/{sim.mean[k] * 1000:.{1 if k != 'itl' else 2}f}".rjust(20)
                for k in METRICS
            )
            + "   (tool/metrics/sim)"
        )
    lines.append(
        "* /metrics p50 interpolated inside a vLLM bucket wider than ±10% of it (PromQL's histogram_quantile);"
        " the bucket bounds are in the JSON"
    )
    return "\n".join(lines)


# --- the run --------------------------------------------------------------------------------------


def served_model(url: str) -> str:
    return httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]


def warm_up(url: str, model: str) -> None:
    """One chat and one completion, so first-use costs (the tokenizer's load) fall outside the scrapes."""
    body = {"model": model, "max_tokens": 4, "stream": True}
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "Hi"}]})
        client.post("/v1/completions", json={**body, "prompt": "Hi"})


def wait_idle(url: str, timeout_s: float = 60.0) -> None:
    """Until the gateway has no request in flight (the tool's last requests have ended)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/grid/zones", timeout=10).json()["in_flight"] == 0:
            return
        time.sleep(1.0)


def grid_up_command(scenario: str, port: int, population: str | None, gateway_hop_ms: float) -> list[str]:
    cmd = [sys.executable, "-m", "grid.cli", "up", "--scenario", scenario, "--port", str(port), "--drain-grace", "5"]
    for field_name, value in hop_overrides(gateway_hop_ms).items():
        cmd += ["--set", f"{field_name}={value:g}"]
    return cmd + (["--default-population", population] if population else [])


def start_grid_up(
    scenario: str, population: str | None, log_path: Path, gateway_hop_ms: float = GATEWAY_HOP_MS
) -> tuple[str, subprocess.Popen]:
    """`grid up` on a free loopback port, in its own process group as an operator runs it; (URL, process)
    once /health answers 200."""
    port = free_port()
    cmd = grid_up_command(scenario, port, population, gateway_hop_ms)
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + GRID_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"grid up exited with code {proc.returncode} (see {log_path})")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_process(proc)
    raise SystemExit(f"grid up did not answer /health within {GRID_START_TIMEOUT_S:.0f} s (see {log_path})")


def run_one(
    tool: str,
    url: str,
    model: str,
    load: Load,
    tokenizer: Path,
    out: Path,
    scenario: str,
    population: str | None = None,
    log: Callable[[str], None] = print,
    gateway_hop_ms: float = GATEWAY_HOP_MS,
    inference_perf_workers: int = INFERENCE_PERF_WORKERS,
) -> dict:
    """One tool's run against the grid at `url` (serving `scenario` with `gateway_hop_ms`), the /metrics
    deltas around it and the simulator on the same load; {"client", "metrics", "sim": Figures, ...}, or
    {"error": ...} when the tool failed."""
    out.mkdir(parents=True, exist_ok=True)
    if tool == "guidellm":
        cmd, env, reader = guidellm_command(url, model, load, tokenizer, out), guidellm_env(), read_guidellm
    else:
        config = out / "inference-perf.yaml"
        config_doc = inference_perf_config(url, model, load, tokenizer, out, inference_perf_workers)
        config.write_text(yaml.safe_dump(config_doc, sort_keys=False))
        cmd, env, reader = inference_perf_command(config), dict(OFFLINE_ENV), read_inference_perf
    (out / f"{tool}.cmd").write_text(" ".join(cmd) + "\n")
    before = scrape(url)
    timeout_s = load.duration_s + STARTUP_ALLOWANCE_S + 120.0
    log(f"{tool}: {load.requests} requests at {load.rate_rps:g} req/s (log: {out / (tool + '.log')})")
    code, seconds, cpu_s = run_tool(cmd, env, out / f"{tool}.log", timeout_s)
    wait_idle(url)
    after = scrape(url)
    if code != 0:
        tail = (out / f"{tool}.log").read_text(errors="replace").strip().splitlines()[-5:]
        return {"error": f"exit code {code} after {seconds:.0f} s: " + " | ".join(tail), "wall_s": seconds}
    client = reader(out)
    metrics = metrics_figures(before, after)
    prompt = round(metrics.extra["prompt_tokens_mean"])  # as the gateway counted it (chat adds its template)
    output = round(metrics.extra["output_tokens_mean"])
    sim = simulate(scenario, population, client.n, load.rate_rps, prompt, output, gateway_hop_ms)
    log(
        f"{tool}: done in {seconds:.0f} s, {cpu_s:.1f} CPU-s ({client.n} ok; /metrics saw {metrics.n}, "
        f"prompt {prompt} tokens)"
    )
    return {"client": client, "metrics": metrics, "sim": sim, "wall_s": seconds, "cpu_s": cpu_s, "command": cmd}


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    dirty = len(git("status", "--porcelain", "--untracked-files=no").splitlines())
    if not dirty:
        return head
    # a work tree others are editing: the diff's hash names the state that was measured
    diff = subprocess.run(["git", "diff", "HEAD"], cwd=ROOT, capture_output=True).stdout
    return f"{head} + {dirty} modified files (diff sha256 {hashlib.sha256(diff).hexdigest()[:12]})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second (constant)")
    parser.add_argument("--duration-s", type=float, default=60.0, help="seconds of load per tool")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated: guidellm,inference-perf")
    parser.add_argument("--scenario", default="default", help="the scenario `grid up` serves (and the simulator runs)")
    parser.add_argument("--population", default=None, help="grid up --default-population (default: the scenario's)")
    parser.add_argument("--host", default=None, help="a running grid's URL (same scenario and hop), not a new one")
    parser.add_argument("--gateway-hop-ms", type=float, default=GATEWAY_HOP_MS, help="in both clocks; 0: off")
    parser.add_argument("--inference-perf-workers", type=int, default=INFERENCE_PERF_WORKERS, help="load.num_workers")
    parser.add_argument("--out", default="runs/ecosystem_tools")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    missing = [t for t in tools if t in TOOLS and not tool_executable(t).is_file()]
    if unknown or missing:
        print(f"unknown tools {unknown}; not installed {missing} (run benchmarks/tools/setup.sh)", file=sys.stderr)
        return 2
    load = Load(args.rate, args.duration_s, args.prompt_tokens, args.output_tokens)
    out = Path(args.out).resolve()  # the tools run in their own folders: a relative path would move
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer_dir()
    population = args.population or build_world(load_scenario(args.scenario)).population_ids[0]
    started = dt.datetime.now(dt.UTC)
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": f"{platform.node()} · {os.cpu_count()} cores · load average {os.getloadavg()[0]:.1f} at start",
        "load": asdict(load) | {"requests": load.requests},
        "scenario": args.scenario,
        "population": population,
        "gateway_hop_ms": args.gateway_hop_ms,
        "inference_perf_workers": args.inference_perf_workers,
        "tools": {t: (TOOLS_DIR / t / "installed.txt").is_file() and _version(t) for t in tools},
    }
    grid = None
    url = args.host
    results: dict[str, dict] = {}
    try:
        if url is None:
            url, grid = start_grid_up(args.scenario, args.population, out / "grid.log", args.gateway_hop_ms)
        model = served_model(url)
        warm_up(url, model)
        for tool in tools:
            results[tool] = run_one(
                tool, url, model, load, tokenizer, out / tool, args.scenario, population,
                gateway_hop_ms=args.gateway_hop_ms, inference_perf_workers=args.inference_perf_workers,
            )  # fmt: skip
            time.sleep(2.0)
    finally:
        if grid is not None:
            stop_process(grid)
    meta["load_average_end"] = round(os.getloadavg()[0], 1)
    print()
    print(format_table(load, results, population))
    print(f"gateway hop {args.gateway_hop_ms:g} ms in both clocks; tools' own CPU: ", end="")
    print(", ".join(f"{t} {r['cpu_s']:.1f} s" for t, r in results.items() if "cpu_s" in r))
    checks: dict[str, bool | None] = {}
    for tool, r in results.items():
        if "error" in r:
            checks[f"{tool} ran"] = False
        else:
            checks.update(checks_for(tool, r["client"], r["metrics"], r["sim"]))
    failed = [name for name, ok in checks.items() if ok is False]
    unknown_checks = [name for name, ok in checks.items() if ok is None]
    print(f"\n{meta['date']} · git {meta['git']} · {meta['machine']}, {meta['load_average_end']} at end")
    print(f"within ±{TOLERANCE:.0%}: {sum(ok is True for ok in checks.values())} of {len(checks)} checks", end="")
    print(f"; missed: {', '.join(failed)}" if failed else "", end="")
    print(f"; bucket-limited (not checked): {len(unknown_checks)}" if unknown_checks else "")
    document = {
        **meta,
        "results": {
            t: {k: (asdict(v) if isinstance(v, Figures) else v) for k, v in r.items()} for t, r in results.items()
        },
        "checks": checks,
    }
    (out / "result.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"written {out / 'result.json'}")
    return 1 if failed else 0


def _version(tool: str) -> str:
    """`name==version` of the tool as its venv recorded it (benchmarks/tools/setup.sh)."""
    lines = (TOOLS_DIR / tool / "installed.txt").read_text().splitlines()
    return next((line for line in lines if line.lower().startswith(tool.lower() + "==")), "?")


if __name__ == "__main__":
    sys.exit(main())
