"""PromQL of the provisioned Grafana dashboards, ready to send to Prometheus' HTTP API.

`dashboard_queries()` reads every dashboard JSON under deploy/grafana/dashboards and returns each
panel target's `expr` with Grafana's macros and template variables replaced (`$__rate_interval` →
`1m`; `$zone` → `.+`, i.e. every zone). A live test evaluates each of them against a real Prometheus
scraping a grid under load; the unit tests check their metric names and syntax.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
MACROS = {"__rate_interval": "1m", "__interval": "15s", "__range": "15m"}
DEFAULT_VARIABLES = {"zone": ".+"}  # every template variable the dashboards define
METRIC_NAME = re.compile(r"\b(vllm:[a-zA-Z0-9_:]+|grid_[a-zA-Z0-9_]+)")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def _panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))  # panels nested in collapsed rows
    return out


def raw_queries(path: Path) -> list[str]:
    """Every target `expr` of a dashboard, as written (macros and variables unreplaced)."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    return [t["expr"] for p in _panels(dashboard.get("panels", [])) for t in p.get("targets", []) if t.get("expr")]


def variable_queries(path: Path) -> list[str]:
    """The `label_values(...)` queries of a dashboard's template variables."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if query:
            out.append(query)
    return out


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replace Grafana macros and template variables; an unknown variable raises KeyError."""
    values = {**MACROS, **DEFAULT_VARIABLES, **(variables or {})}

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def dashboard_queries(variables: dict[str, str] | None = None) -> list[str]:
    """Every PromQL expression of every dashboard, ready to evaluate (duplicates removed, in order)."""
    seen: dict[str, None] = {}
    for path in dashboard_files():
        for expr in raw_queries(path):
            seen.setdefault(substitute(expr, variables))
    return list(seen)


def metric_names(expr: str) -> set[str]:
    """The vllm:… and grid_… metric names an expression refers to."""
    return set(METRIC_NAME.findall(expr))
