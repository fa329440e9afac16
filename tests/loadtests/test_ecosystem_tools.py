"""The ecosystem's benchmark tools, guidellm and inference-perf, against a real `grid up` (issue 14, item 6).

The tools live in their own virtualenvs (`make tools`, i.e. benchmarks/tools/setup.sh); each live test is
skipped, saying so, when its tool is not installed. One grid for the module, on a loopback port; each tool
offers 20 requests at 2 req/s (prompt 128 tokens, output 32, `ignore_eos`, streamed) through
`benchmarks/ecosystem_tools.run_one`, the benchmark's own code, in well under 60 s, and must:

- run offline, with the Qwen3 tokenizer built from the dashscope wheel;
- end every request, with the sizes it asked for as the gateway counts them: the tool's tokenizer and
  the gateway's agree, so a 128-token prompt is 128 tokens at the gateway (136 on chat: Qwen3's template);
- agree with `/metrics` (exact means: ITL and E2E within 10%; TTFT above the gateway's by the client's
  own HTTP hop only) and with the simulator on the same arrivals (E2E p50 and TTFT p50 within 10%, mean
  ITL within 10%).

The population is New York (grid up --default-population): its 70 ms RTT to the London zone hides the
gateway's own path (intake, routing, the Ray hops to and from the zone actor) inside the RTT the grid
applies. From London (2 ms RTT, the default world's default population) it would not fit in the 1 ms
half RTT: both clocks run with the benchmark's `network.gateway_hop_ms` (docs/benchmark-tools.md).
"""

from __future__ import annotations

import math

import pytest

from benchmarks.ecosystem_tools import (
    GATEWAY_HOP_MS,
    INFERENCE_PERF_WORKERS,
    Histogram,
    Load,
    grid_up_command,
    inference_perf_config,
    run_one,
    simulate,
    start_grid_up,
    stop_process,
    tokenizer_dir,
    tool_executable,
)

LOAD = Load(rate_rps=2.0, duration_s=10.0, prompt_tokens=128, output_tokens=32)
POPULATION = "new_york"
CHAT_TEMPLATE_TOKENS = 8  # <|im_start|>user\n … <|im_end|>\n<|im_start|>assistant\n around the content


def needs(tool: str):
    return pytest.mark.skipif(
        not tool_executable(tool).is_file(), reason=f"{tool} is not installed: make tools (benchmarks/tools/setup.sh)"
    )


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    url, process = start_grid_up("default", POPULATION, tmp_path_factory.mktemp("grid") / "grid.log")
    try:
        yield url
    finally:
        stop_process(process)


def _run(tool: str, grid: str, tmp_path) -> dict:
    result = run_one(tool, grid, "Qwen/Qwen3-8B", LOAD, tokenizer_dir(), tmp_path, "default", POPULATION)
    assert "error" not in result, result.get("error")
    return result


def _check_agreement(result: dict, prompt_tokens: float) -> None:
    client, metrics, sim = result["client"], result["metrics"], result["sim"]
    # every request ran to its end, once, with the sizes asked for, as the gateway counted them
    assert client.n == metrics.n == sim.n == LOAD.requests
    assert metrics.extra["prompt_tokens_mean"] == pytest.approx(prompt_tokens, abs=1.0)
    assert metrics.extra["output_tokens_mean"] == LOAD.output_tokens
    # the tool vs /metrics (the same requests, measured at either end of one loopback connection)
    for k in ("itl", "e2e"):
        assert client.mean[k] == pytest.approx(metrics.mean[k], rel=0.10), k
    assert metrics.mean["ttft"] - 0.002 <= client.mean["ttft"] <= metrics.mean["ttft"] + 0.025
    # the tool vs the simulator on the same arrivals
    assert client.p50["e2e"] == pytest.approx(sim.p50["e2e"], rel=0.10)
    assert client.p50["ttft"] == pytest.approx(sim.p50["ttft"], rel=0.10)
    assert client.mean["itl"] == pytest.approx(sim.mean["itl"], rel=0.10)


@pytest.mark.live
@pytest.mark.slow
@needs("guidellm")
def test_guidellm_measures_what_metrics_and_the_simulator_say(grid, tmp_path):
    result = _run("guidellm", grid, tmp_path)
    assert result["client"].extra["errored"] == result["client"].extra["incomplete"] == 0
    assert result["client"].extra["prompt_tokens_p50"] == LOAD.prompt_tokens + CHAT_TEMPLATE_TOKENS
    _check_agreement(result, LOAD.prompt_tokens + CHAT_TEMPLATE_TOKENS)
    # guidellm's ITL is per request, (last − first token)/(tokens − 1): vLLM's TPOT, as the simulator's
    assert result["client"].p50["itl"] == pytest.approx(result["sim"].p50["itl"], rel=0.10)


@pytest.mark.live
@pytest.mark.slow
@needs("inference-perf")
def test_inference_perf_measures_what_metrics_and_the_simulator_say(grid, tmp_path):
    result = _run("inference-perf", grid, tmp_path)
    assert result["client"].extra["failures"] == 0
    # its re-tokenization of every streamed answer gave the gateway's completion_tokens (same vocabulary)
    assert result["client"].extra["token_count_mismatches"] == 0
    # random token ids, decoded by the tool and re-encoded by the gateway, may merge at a seam: ±1 token
    _check_agreement(result, LOAD.prompt_tokens)


def test_grid_up_and_the_simulator_run_with_the_same_gateway_hop(tmp_path):
    """The benchmark's hop reaches `grid up` (--set) and the simulator alike; from London (2 ms RTT to its
    zone) it adds 2 × (hop − 1 ms) to the simulated TTFT, from New York (70 ms) nothing."""
    assert GATEWAY_HOP_MS > 0
    cmd = grid_up_command("default", 8000, None, GATEWAY_HOP_MS)
    assert cmd[cmd.index("--set") + 1] == f"network.gateway_hop_ms={GATEWAY_HOP_MS:g}"
    off_cmd = grid_up_command("default", 8000, "new_york", 0.0)  # 0: off in both (a scenario's own value too)
    assert off_cmd[off_cmd.index("--set") + 1] == "network.gateway_hop_ms=0"
    for population, added_s in (("london", 2 * GATEWAY_HOP_MS / 1000 - 0.002), ("new_york", 0.0)):
        off = simulate("default", population, 8, 1.0, 64, 8, gateway_hop_ms=0.0)
        on = simulate("default", population, 8, 1.0, 64, 8, gateway_hop_ms=GATEWAY_HOP_MS)
        # jitter (×(1 + Exp(0.05))) scales the floored RTT as any other: within 20% of what it adds
        assert on.p50["ttft"] - off.p50["ttft"] == pytest.approx(added_s, rel=0.2, abs=1e-6), population
    config = inference_perf_config("http://127.0.0.1:8000", "m", LOAD, tmp_path, tmp_path)
    assert config["load"]["num_workers"] == INFERENCE_PERF_WORKERS == 1  # not its default, the CPU count


def test_histogram_quantile_interpolates_within_the_bucket_as_promql():
    # 10 in (0, 0.01], 30 in (0.01, 0.025], 0 in (0.025, 0.05], 10 above: rank 25 is 15/30 into the 2nd bucket
    h = Histogram({0.01: 10, 0.025: 40, 0.05: 40, math.inf: 50}, sum=1.0, count=50)
    assert h.quantile(0.5) == pytest.approx((0.0175, 0.01, 0.025))
    assert h.quantile(0.1) == pytest.approx((0.005, 0.0, 0.01))  # rank 5 of the first 10
    assert h.quantile(0.99)[0] == 0.05  # the +Inf bucket answers its lower bound
    before = Histogram({0.01: 5, 0.025: 5, 0.05: 5, math.inf: 5}, sum=0.1, count=5)
    assert h.minus(before) == Histogram({0.01: 5, 0.025: 35, 0.05: 35, math.inf: 45}, sum=0.9, count=45)
    assert math.isnan(Histogram({}, 0.0, 0.0).quantile(0.5)[0])
