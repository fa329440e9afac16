"""`grid scale ZONE N`: set a zone's replica target by hand on a running live grid (its admin API).

    grid scale frankfurt-1 4 [--url http://127.0.0.1:8000]

The target is the autoscaler's (`grid.scaling.controller.ScalingController.set_target`): outside the
policy's bounds, inside the region's pool (a cut is reported as `stockout`); new replicas serve after
the cold start, extra ones drain. An autoscaler other than `static` may move it again at its next
decision. Sends `GRID_ADMIN_TOKEN` like `grid fault`. Exit codes: 0 done; 2 bad input (a count that
is not a whole number ≥ 0, an unknown zone, no token); 1 the gateway refused or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import quote

from grid.errors import GridInputError
from grid.fault_cli import DEFAULT_URL, TOKEN_ENV, _token


def replicas_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of replicas, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def add_scale_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("scale", help="set a zone's replica target on a running live grid (admin API)")
    p.add_argument("zone", help="a zone of the running scenario, e.g. frankfurt-1")
    p.add_argument("replicas", type=replicas_arg, help="the target: serving + warming replicas (≥ 0)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"the gateway (default {DEFAULT_URL})")
    p.set_defaults(run=run_scale)
    return p


def run_scale(args: argparse.Namespace) -> int:
    import httpx

    if not args.zone.strip():
        raise GridInputError("grid scale: ZONE must name a zone")
    headers = {"Authorization": f"Bearer {_token()}"}
    zone = quote(args.zone, safe="")
    url = f"{args.url.rstrip('/')}/admin/zones/{zone}/replicas"
    try:
        response = httpx.post(url, json={"replicas": args.replicas}, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        print(f"grid scale: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    try:
        payload = response.json()
    except ValueError:
        payload = {"status": response.status_code, "body": response.text[:500]}
    if response.status_code == 200:
        print(json.dumps(payload, indent=2))
        return 0
    error = payload.get("error", {}) if isinstance(payload, dict) else {}
    message = error.get("message") if isinstance(error, dict) else None
    if response.status_code == 400 or (isinstance(error, dict) and error.get("code") == "zone_not_found"):
        raise GridInputError(f"grid scale: {message or payload}")  # the zone or count was wrong: exit 2
    hint = f" (is {TOKEN_ENV} set for `grid up`?)" if response.status_code == 404 else ""
    print(f"grid scale: {response.status_code}: {message or payload}{hint}", file=sys.stderr)
    return 1
