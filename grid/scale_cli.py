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

from grid.cli_args import nonnegative_int_arg
from grid.errors import GridInputError
from grid.fault_cli import DEFAULT_URL, TOKEN_ENV, admin_call, error_message


def add_scale_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("scale", help="set a zone's replica target on a running live grid (admin API)")
    p.add_argument("zone", help="a zone of the running scenario, e.g. frankfurt-1")
    p.add_argument("replicas", type=nonnegative_int_arg, help="the target: serving + warming replicas (≥ 0)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"the gateway (default {DEFAULT_URL})")
    p.set_defaults(run=run_scale)
    return p


def run_scale(args: argparse.Namespace) -> int:
    if not args.zone.strip():
        raise GridInputError("grid scale: ZONE must name a zone")
    path = f"/admin/zones/{quote(args.zone, safe='')}/replicas"
    answer = admin_call("grid scale", "POST", args.url, path, {"replicas": args.replicas})
    if answer is None:
        return 1
    status, payload = answer
    if status == 200:
        print(json.dumps(payload, indent=2))
        return 0
    message = error_message(payload)
    error = payload.get("error") if isinstance(payload, dict) else None
    if status == 400 or (isinstance(error, dict) and error.get("code") == "zone_not_found"):
        raise GridInputError(f"grid scale: {message or payload}")  # the zone or count was wrong: exit 2
    hint = f" (is {TOKEN_ENV} set for `grid up`?)" if status == 404 else ""
    print(f"grid scale: {status}: {message or payload}{hint}", file=sys.stderr)
    return 1
