"""Prompt and output token counts: lognormal distributions, clipped and rounded, and their fit to a trace.

A :class:`SizeDistribution` draws ``K = clip(round(X), min_tokens, max_tokens)`` with
``ln X ~ Normal(mu, sigma)``. A :class:`SizeModel` pairs a prompt and an output distribution and
couples them with a Gaussian copula on the log values (correlation ``rho``; 0.0 = independent).

:func:`fit_lognormal` is the maximum-likelihood fit of ``mu`` and ``sigma`` to the log token counts
(mean and population standard deviation of ``ln k``). It ignores the rounding and the clipping, which
is fine for counts in the tens and up; its fit quality on the Azure 2023 traces is reported in
``regions/trace_sizes.yaml``.

Fit a trace and print the parameters as YAML, with the fit-quality table as comments::

    python -m grid.demand.sizes path/to/AzureLLMInferenceTrace_conv.csv [more traces...]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from grid.errors import GridInputError

__all__ = [
    "SizeDistribution",
    "SizeModel",
    "fit_lognormal",
    "fit_size_model",
    "spearman",
    "load_size_models",
    "RHO_THRESHOLD",
]

# Below this |Spearman rho| between prompt and output sizes, fit_size_model samples them independently.
RHO_THRESHOLD = 0.3

# mean: exact sum over this many integers, then the (midpoint-rule) integral for the rest.
_EXACT_TERMS = 1 << 20


@dataclass(frozen=True)
class SizeDistribution:
    """A token-count distribution: ``clip(round(exp(Normal(mu, sigma))), min_tokens, max_tokens)``."""

    mu: float
    sigma: float
    min_tokens: int
    max_tokens: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"need finite mu and sigma > 0, got mu={self.mu}, sigma={self.sigma}")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"need 1 <= min_tokens <= max_tokens, got {self.min_tokens}, {self.max_tokens}")

    @cached_property
    def mean(self) -> float:
        """Mean of the clipped, rounded distribution, computed deterministically (no sampling).

        With ``K = clip(round(X))``, ``P(K > j) = P(X >= j + 1/2)`` for ``min <= j < max``, so
        ``E[K] = min + sum_{j=min}^{max-1} P(X >= j + 1/2)`` exactly. The sum is evaluated term by term
        for the first 2**20 integers; any rest is replaced by the integral of ``P(X >= t)`` (the
        midpoint rule, whose error there is far below 1e-9 of the mean), which has a closed form.
        """
        from scipy.special import ndtr

        lo, hi = self.min_tokens, self.max_tokens
        split = min(hi, lo + _EXACT_TERMS)
        j = np.arange(lo, split, dtype=np.float64)
        total = lo + float(np.sum(ndtr((self.mu - np.log(j + 0.5)) / self.sigma)))
        if split < hi:
            total += self._integral_survival(split, hi)
        return total

    def _integral_survival(self, a: float, b: float) -> float:
        """Integral of P(X >= t) dt over [a, b] = E[clip(X, a, b)] - a, in closed form."""
        from scipy.special import ndtr

        mu, s = self.mu, self.sigma
        za, zb = (math.log(a) - mu) / s, (math.log(b) - mu) / s
        partial = math.exp(mu + s * s / 2) * (ndtr(zb - s) - ndtr(za - s))
        return float(a * ndtr(za) + b * ndtr(-zb) + partial - a)

    def quantile(self, q: float | np.ndarray) -> np.ndarray:
        """The q-quantile(s) of the clipped, rounded distribution (int64)."""
        from scipy.special import ndtri

        return self.from_normal(ndtri(np.asarray(q, dtype=np.float64)))

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        """Map standard-normal values to token counts (monotone; int64)."""
        log_x = np.minimum(self.mu + self.sigma * np.asarray(z, dtype=np.float64), math.log(self.max_tokens) + 1)
        return np.clip(np.rint(np.exp(log_x)), self.min_tokens, self.max_tokens).astype(np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` token counts (int64), drawn from ``rng``."""
        return self.from_normal(rng.standard_normal(n))

    def to_dict(self) -> dict:
        return {
            "mu": self.mu,
            "sigma": self.sigma,
            "min_tokens": self.min_tokens,
            "max_tokens": self.max_tokens,
        }


@dataclass(frozen=True)
class SizeModel:
    """Prompt and output sizes of a request, coupled by a Gaussian copula on their log values.

    ``rho`` is the correlation of the two underlying normals (``ln X``); 0.0 samples them
    independently.
    """

    prompt: SizeDistribution
    output: SizeDistribution
    rho: float = 0.0

    def __post_init__(self) -> None:
        if not -1.0 < self.rho < 1.0:
            raise ValueError(f"need -1 < rho < 1, got {self.rho}")

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (prompt_tokens, output_tokens) pairs as two int64 arrays, drawn from ``rng``."""
        z_prompt = rng.standard_normal(n)
        z_output = rng.standard_normal(n)
        if self.rho:
            z_output = self.rho * z_prompt + math.sqrt(1.0 - self.rho**2) * z_output
        return self.prompt.from_normal(z_prompt), self.output.from_normal(z_output)

    def to_dict(self) -> dict:
        return {"prompt": self.prompt.to_dict(), "output": self.output.to_dict(), "rho": self.rho}


def fit_lognormal(tokens: np.ndarray, max_tokens: int | None = None) -> SizeDistribution:
    """Maximum-likelihood lognormal fit to token counts (all >= 1).

    ``mu`` and ``sigma`` are the mean and the population standard deviation of ``ln tokens``;
    ``min_tokens`` is 1 and ``max_tokens`` defaults to the largest count seen.
    """
    values = np.asarray(tokens)
    if values.ndim != 1 or values.size < 2:
        raise ValueError("need a 1-D array of at least 2 token counts")
    if not np.all(np.isfinite(values)) or values.min() < 1:
        raise ValueError("token counts must be finite and >= 1")
    logs = np.log(values.astype(np.float64))
    sigma = float(logs.std())
    if sigma <= 0:
        raise ValueError("all token counts are equal: a lognormal needs some spread")
    top = int(values.max()) if max_tokens is None else int(max_tokens)
    return SizeDistribution(mu=float(logs.mean()), sigma=sigma, min_tokens=1, max_tokens=top)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties get their average rank)."""
    from scipy.stats import rankdata

    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def fit_size_model(
    prompt_tokens: np.ndarray, output_tokens: np.ndarray, rho_threshold: float = RHO_THRESHOLD
) -> SizeModel:
    """Fit both marginals; couple them only if ``|Spearman rho| >= rho_threshold``.

    The copula ``rho`` is then the correlation of the log values (its maximum-likelihood estimate
    under the bivariate lognormal that the marginal fits assume).
    """
    rho = 0.0
    if abs(spearman(prompt_tokens, output_tokens)) >= rho_threshold:
        rho = float(np.corrcoef(np.log(prompt_tokens), np.log(output_tokens))[0, 1])
    return SizeModel(fit_lognormal(prompt_tokens), fit_lognormal(output_tokens), rho)


# ----------------------------------------------------------------------------------- YAML presets


def load_size_models(path: str | Path) -> dict[str, SizeModel]:
    """Read named size models (``regions/trace_sizes.yaml`` format) with file:line errors.

    The file maps a name to ``{prompt: {mu, sigma, min_tokens, max_tokens}, output: {...}, rho}``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GridInputError(f"{path}: cannot read size models: {getattr(e, 'strerror', None) or e}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise GridInputError(f"{path}:{line}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if root is None:
        raise GridInputError(f"{path}:1: no size models: the file is empty")
    models = {}
    for name, node in _mapping(path, root, "the file", {}).items():
        fields = _mapping(path, node, name, {"prompt", "output", "rho"})
        rho = _number(path, fields["rho"], f"{name}.rho", float) if "rho" in fields else 0.0
        prompt = _distribution(path, fields.get("prompt"), f"{name}.prompt", node)
        output = _distribution(path, fields.get("output"), f"{name}.output", node)
        if not -1.0 < rho < 1.0:
            raise GridInputError(f"{path}:{_line(fields['rho'])}: {name}.rho must be in (-1, 1), got {rho}")
        models[name] = SizeModel(prompt, output, rho)
    return models


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(path: Path, node: yaml.Node, what: str, allowed: set[str]) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise GridInputError(f"{path}:{_line(node)}: {what} must be a mapping")
    out = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise GridInputError(f"{path}:{_line(key)}: {what}: keys must be plain names")
        if allowed and key.value not in allowed:
            raise GridInputError(
                f"{path}:{_line(key)}: {what}: unknown key {key.value!r} (expected {', '.join(sorted(allowed))})"
            )
        out[key.value] = value
    return out


def _number(path: Path, node: yaml.Node, what: str, kind: type) -> float | int:
    value = yaml.SafeLoader("").construct_object(node) if isinstance(node, yaml.ScalarNode) else None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok:
        name = "an integer" if kind is int else "a number"
        raise GridInputError(f"{path}:{_line(node)}: {what} must be {name}")
    return kind(value)


def _distribution(path: Path, node: yaml.Node | None, what: str, parent: yaml.Node) -> SizeDistribution:
    if node is None:
        raise GridInputError(f"{path}:{_line(parent)}: {what} is missing")
    keys = ("mu", "sigma", "min_tokens", "max_tokens")
    fields = _mapping(path, node, what, set(keys))
    for key in keys:
        if key not in fields:
            raise GridInputError(f"{path}:{_line(node)}: {what}.{key} is missing")
    values = {key: _number(path, fields[key], f"{what}.{key}", int if "tokens" in key else float) for key in keys}
    try:
        return SizeDistribution(**values)
    except ValueError as e:
        raise GridInputError(f"{path}:{_line(node)}: {what}: {e}") from None


# -------------------------------------------------------------------------------------------- CLI


def _report(path: Path, name: str) -> str:
    """YAML for one trace: the fitted model, with the fit-quality table as comments."""
    from grid.demand.traces import read_trace

    trace = read_trace(path)
    rho_s = spearman(trace.prompt_tokens, trace.output_tokens)
    model = fit_size_model(trace.prompt_tokens, trace.output_tokens)
    coupling = "independent sampling" if model.rho == 0.0 else "Gaussian copula on the log values"
    lines = [
        f"# {path.name}: {len(trace):,} requests over {trace.duration_s / 60:.1f} min",
        f"# Spearman rho(prompt, output) = {rho_s:+.3f} -> {coupling} (threshold |rho| {RHO_THRESHOLD})",
        f"#   {'':7s}{'':10s}{'mean':>9s}{'p50':>8s}{'p90':>8s}{'p99':>8s}",
    ]
    qs = [0.5, 0.9, 0.99]

    def row(label: str, kind: str, values: list[float], first: str, rest: str) -> str:
        return f"#   {label:7s}{kind:10s}" + first.format(values[0]) + "".join(rest.format(v) for v in values[1:])

    for label, tokens, dist in (
        ("prompt", trace.prompt_tokens, model.prompt),
        ("output", trace.output_tokens, model.output),
    ):
        emp = [float(tokens.mean()), *np.percentile(tokens, [100 * q for q in qs], method="inverted_cdf")]
        fit = [dist.mean, *dist.quantile(qs)]
        err = [100 * (f - e) / e for f, e in zip(fit, emp, strict=True)]
        lines.append(row(label, "empirical", emp, "{:8.1f} ", "{:8.0f}"))
        lines.append(row("", "fitted", fit, "{:8.1f} ", "{:8.0f}"))
        lines.append(row("", "error", err, "{:+7.1f}% ", "{:+7.1f}%"))

    def flow(d: SizeDistribution) -> str:
        return f"{{mu: {d.mu:.4f}, sigma: {d.sigma:.4f}, min_tokens: {d.min_tokens}, max_tokens: {d.max_tokens}}}"

    lines += [
        f"{name}:",
        f"  prompt: {flow(model.prompt)}",
        f"  output: {flow(model.output)}",
        f"  rho: {model.rho:.4f}" if model.rho else "  rho: 0.0",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grid.demand.sizes",
        description="Fit lognormal prompt/output size models to request traces and print them as YAML.",
    )
    parser.add_argument("traces", nargs="+", type=Path, help="Azure CSV or JSONL request traces")
    parser.add_argument("--name", action="append", help="model name per trace (default: the file name's last _-part)")
    args = parser.parse_args(argv)
    names = args.name or [p.stem.rsplit("_", 1)[-1].lower() for p in args.traces]
    if len(names) != len(args.traces):
        parser.error("give one --name per trace")
    try:
        print("\n".join(_report(p, n) for p, n in zip(args.traces, names, strict=True)))
    except GridInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
