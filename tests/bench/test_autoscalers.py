"""`grid bench --autoscalers`: fleet policies compared like routing policies, each run labelled."""

from grid.bench.runner import RunSpec, run_one
from grid.bench.summary import run_metrics


def test_bench_compares_autoscalers_as_labelled_runs():
    run = run_one(RunSpec("flash-crowd", (("autoscaling.upscale_delay_s", 0),), "latency_aware", 0, 1.0, 30.0, "qps"))
    assert run["policy"] == "latency_aware+qps"
    assert run["report"]["meta"]["scaling"]["autoscaler"] == "qps"
    assert run_metrics(run)["fleet_usd"] > 0
