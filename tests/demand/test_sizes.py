import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from grid.demand.sizes import (
    SizeDistribution,
    SizeModel,
    fit_lognormal,
    fit_size_model,
    load_size_models,
    main,
    spearman,
)
from grid.errors import GridInputError

ROOT = Path(__file__).parents[2]
TRACES = Path(__file__).parents[3] / "shared" / "data" / "traces" / "azure-llm-2023"


def test_fit_recovers_a_known_lognormal():
    rng = np.random.default_rng(1)
    known = SizeDistribution(mu=6.0, sigma=0.9, min_tokens=1, max_tokens=10**7)
    fitted = fit_lognormal(known.sample(rng, 200_000))
    assert fitted.mu == pytest.approx(6.0, rel=0.02)
    assert fitted.sigma == pytest.approx(0.9, rel=0.02)
    assert fitted.min_tokens == 1


def test_fit_max_tokens_defaults_to_the_largest_count():
    tokens = np.array([3, 10, 700, 42])
    assert fit_lognormal(tokens).max_tokens == 700
    assert fit_lognormal(tokens, max_tokens=4096).max_tokens == 4096


@pytest.mark.parametrize("tokens", [np.array([5]), np.array([0, 4, 5]), np.array([7, 7, 7]), np.ones((2, 2))])
def test_fit_rejects_unusable_counts(tokens):
    with pytest.raises(ValueError):
        fit_lognormal(tokens)


@pytest.mark.parametrize(
    "dist",
    [
        SizeDistribution(mu=6.6, sigma=1.0, min_tokens=1, max_tokens=14_050),  # like conv prompts
        SizeDistribution(mu=7.0, sigma=1.36, min_tokens=1, max_tokens=7_437),  # heavily clipped at the top
        SizeDistribution(mu=0.3, sigma=0.8, min_tokens=1, max_tokens=50),  # mostly rounding and the floor
        SizeDistribution(mu=2.8, sigma=0.85, min_tokens=4, max_tokens=2_000),
    ],
)
def test_mean_matches_a_large_sample(dist):
    sample = dist.sample(np.random.default_rng(2), 1_000_000)
    assert dist.mean == pytest.approx(sample.mean(), rel=0.01)


def test_mean_with_a_far_cap_uses_the_tail_integral():
    # cap far beyond 2**20 terms: the rounding and the cap hardly matter, so E = exp(mu + sigma^2 / 2)
    dist = SizeDistribution(mu=5.0, sigma=1.5, min_tokens=1, max_tokens=10**9)
    assert dist.mean == pytest.approx(math.exp(5.0 + 1.5**2 / 2), rel=1e-4)
    near = SizeDistribution(mu=5.0, sigma=1.5, min_tokens=1, max_tokens=(1 << 20) + 1)
    assert near.mean < dist.mean


def test_quantiles_match_the_sample():
    dist = SizeDistribution(mu=5.0, sigma=0.9, min_tokens=1, max_tokens=1000)
    sample = dist.sample(np.random.default_rng(3), 400_000)
    qs = [0.1, 0.5, 0.9]
    np.testing.assert_allclose(dist.quantile(qs), np.percentile(sample, [10, 50, 90]), rtol=0.01)
    assert dist.quantile(0.999) == 1000
    assert dist.quantile(0.0) == 1 and dist.quantile(1.0) == 1000


def test_sample_is_int64_clipped_and_deterministic():
    dist = SizeDistribution(mu=3.0, sigma=2.0, min_tokens=2, max_tokens=100)
    a = dist.sample(np.random.default_rng(42), 10_000)
    b = dist.sample(np.random.default_rng(42), 10_000)
    c = dist.sample(np.random.default_rng(43), 10_000)
    assert a.dtype == np.int64 and a.shape == (10_000,)
    assert a.min() == 2 and a.max() == 100
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert dist.sample(np.random.default_rng(0), 0).shape == (0,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mu": 1.0, "sigma": 0.0, "min_tokens": 1, "max_tokens": 10},
        {"mu": math.nan, "sigma": 1.0, "min_tokens": 1, "max_tokens": 10},
        {"mu": 1.0, "sigma": 1.0, "min_tokens": 0, "max_tokens": 10},
        {"mu": 1.0, "sigma": 1.0, "min_tokens": 11, "max_tokens": 10},
    ],
)
def test_distribution_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        SizeDistribution(**kwargs)


def test_size_model_copula_and_independence():
    prompt = SizeDistribution(mu=6.0, sigma=1.0, min_tokens=1, max_tokens=10**6)
    output = SizeDistribution(mu=5.0, sigma=0.8, min_tokens=1, max_tokens=10**6)
    rng = np.random.default_rng(5)
    p, o = SizeModel(prompt, output, rho=0.6).sample(rng, 200_000)
    assert p.dtype == np.int64 and o.dtype == np.int64 and p.shape == o.shape == (200_000,)
    assert np.corrcoef(np.log(p), np.log(o))[0, 1] == pytest.approx(0.6, abs=0.01)
    assert np.mean(np.log(o)) == pytest.approx(5.0, abs=0.01)  # the marginal is untouched
    p, o = SizeModel(prompt, output).sample(rng, 200_000)
    assert abs(spearman(p, o)) < 0.01
    p1, o1 = SizeModel(prompt, output, 0.3).sample(np.random.default_rng(9), 100)
    p2, o2 = SizeModel(prompt, output, 0.3).sample(np.random.default_rng(9), 100)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(o1, o2)
    with pytest.raises(ValueError):
        SizeModel(prompt, output, rho=1.0)


def test_fit_size_model_couples_only_material_correlation():
    rng = np.random.default_rng(6)
    prompt = SizeDistribution(mu=6.0, sigma=1.0, min_tokens=1, max_tokens=10**6)
    output = SizeDistribution(mu=4.0, sigma=0.7, min_tokens=1, max_tokens=10**6)
    fitted = fit_size_model(*SizeModel(prompt, output, rho=0.5).sample(rng, 100_000))
    assert fitted.rho == pytest.approx(0.5, abs=0.02)
    assert fit_size_model(*SizeModel(prompt, output, rho=0.1).sample(rng, 100_000)).rho == 0.0


# ------------------------------------------------------------------------------- YAML and the CLI


def test_the_shipped_trace_sizes_load():
    models = load_size_models(ROOT / "regions" / "trace_sizes.yaml")
    assert set(models) == {"conv", "code"}
    for model in models.values():
        assert isinstance(model, SizeModel)
        assert model.prompt.min_tokens == 1 and model.output.min_tokens == 1
    assert 1_100 < models["conv"].prompt.mean < 1_300
    assert 20 < models["code"].output.mean < 30


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"Azure traces not present at {TRACES}")
def test_shipped_trace_sizes_are_the_fit_of_the_real_traces(capsys):
    assert main([str(TRACES / "AzureLLMInferenceTrace_conv.csv"), str(TRACES / "AzureLLMInferenceTrace_code.csv")]) == 0
    refit = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load((ROOT / "regions" / "trace_sizes.yaml").read_text())
    assert refit == shipped


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("conv: [1, 2]\n", 1, ("conv must be a mapping",)),
        (
            "conv:\n  prompt: {mu: 1, sigma: 1, min_tokens: 1, max_tokens: 9}\n  rho: 0\n",
            2,
            ("conv.output is missing",),
        ),
        (
            "conv:\n  prompt: {mu: 1, sigma: 1, min_tokens: 1, max_tokens: 9}\n"
            "  output: {mu: 1, sigma: x, min_tokens: 1, max_tokens: 9}\n",
            3,
            ("conv.output.sigma must be a number",),
        ),
        (
            "conv:\n  prompt: {mu: 1, sigma: 1, min_tokens: 1, max_tokens: 9.5}\n"
            "  output: {mu: 1, sigma: 1, min_tokens: 1, max_tokens: 9}\n",
            2,
            ("max_tokens must be an integer",),
        ),
        (
            "conv:\n  prompt: {mu: 1, sigma: 1, min_tokens: 1, max_tokens: 9}\n"
            "  output: {mu: 1, sigma: -1, min_tokens: 1, max_tokens: 9}\n",
            3,
            ("sigma > 0",),
        ),
        (
            "conv:\n  prompt: {mu: 1, sigma: 1, min_tokens: 1, max_tokens: 9}\n"
            "  output: {mu: 1, sigma: 1, min_tokens: 1, max_tokens: 9}\n  rho: 2\n",
            4,
            ("rho must be in (-1, 1)",),
        ),
        ("conv:\n  promt: {}\n", 2, ("unknown key 'promt'",)),
        ("conv: {prompt: [}\n", 1, ("invalid YAML",)),
        ("", 1, ("empty",)),
    ],
)
def test_load_size_models_errors(tmp_path, text, line, words):
    path = tmp_path / "sizes.yaml"
    path.write_text(text)
    with pytest.raises(GridInputError) as info:
        load_size_models(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    for word in words:
        assert word in message, message


def test_cli_fits_a_jsonl_trace(tmp_path, capsys):
    rng = np.random.default_rng(8)
    prompt, output = SizeModel(
        SizeDistribution(mu=5.0, sigma=0.5, min_tokens=1, max_tokens=5000),
        SizeDistribution(mu=3.0, sigma=0.4, min_tokens=1, max_tokens=500),
    ).sample(rng, 5_000)
    path = tmp_path / "my_trace.jsonl"
    path.write_text(
        "".join(
            json.dumps({"timestamp": 10.0 * i, "input_length": int(p), "output_length": int(o)}) + "\n"
            for i, (p, o) in enumerate(zip(prompt, output, strict=True))
        )
    )
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "Spearman" in out and "p99" in out
    fitted = yaml.safe_load(out)["trace"]
    assert fitted["prompt"]["mu"] == pytest.approx(5.0, abs=0.03)
    assert fitted["output"]["sigma"] == pytest.approx(0.4, abs=0.03)
    assert fitted["rho"] == 0.0


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    assert main([str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
