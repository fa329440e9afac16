"""`grid fault …`: inject and end faults on a running live grid through its admin API.

    grid fault zone-down ZONE [--for 30s]
    grid fault zone-slow ZONE --factor 3 [--for 1m]
    grid fault link-delay POPULATION REGION --add 200ms [--for 1m]
    grid fault partition POPULATION REGION [--for 1m]
    grid fault recover [ZONE]          # no ZONE: end every fault
    grid fault list                    # active faults and the history, with detection figures

Every command takes `--url` (default http://127.0.0.1:8000) and sends the admin token from the
environment variable `GRID_ADMIN_TOKEN` (the one `grid up` was started with) as a Bearer token.
Wire it with `add_fault_parser(subparsers)`; each command returns an exit code (0 ok, 1 the gateway
refused or could not be reached; bad arguments raise GridInputError → 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from grid.cli import positive_float_arg
from grid.errors import GridInputError
from grid.units import parse_duration_s

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_ENV = "GRID_ADMIN_TOKEN"


def _duration(text: str) -> float:
    try:
        value = parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _delay_ms(text: str) -> float:
    try:
        value = parse_duration_s(text) * 1000.0
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text!r}")
    return value


def add_fault_parser(subparsers) -> argparse.ArgumentParser:
    fault = subparsers.add_parser("fault", help="inject or end faults on a running live grid (admin API)")
    kinds = fault.add_subparsers(dest="fault_command", required=True, metavar="FAULT")

    def common(parser: argparse.ArgumentParser, duration: bool = True) -> None:
        parser.add_argument("--url", default=DEFAULT_URL, help=f"the gateway (default {DEFAULT_URL})")
        if duration:
            parser.add_argument(
                "--for", dest="duration_s", type=_duration, help="end the fault after this long, e.g. 30s"
            )

    p = kinds.add_parser("zone-down", help="kill a zone's actor; it restarts and stays down for the window")
    p.add_argument("zone")
    common(p)
    p.set_defaults(run=run_fault, kind="zone_down")

    p = kinds.add_parser("zone-slow", help="multiply a zone's step times")
    p.add_argument("zone")
    p.add_argument("--factor", type=positive_float_arg, required=True)
    common(p)
    p.set_defaults(run=run_fault, kind="zone_slow")

    p = kinds.add_parser("link-delay", help="add RTT between a population and a region")
    p.add_argument("population")
    p.add_argument("region")
    p.add_argument("--add", dest="add_ms", type=_delay_ms, required=True, help="e.g. 200ms")
    common(p)
    p.set_defaults(run=run_fault, kind="link_delay")

    p = kinds.add_parser("partition", help="cut the path between a population and a region")
    p.add_argument("population")
    p.add_argument("region")
    common(p)
    p.set_defaults(run=run_fault, kind="partition")

    p = kinds.add_parser("recover", help="end the faults of ZONE, or every fault")
    p.add_argument("zone", nargs="?")
    common(p, duration=False)
    p.set_defaults(run=run_recover)

    p = kinds.add_parser("list", help="active faults and the history")
    common(p, duration=False)
    p.set_defaults(run=run_list)
    return fault


def _token() -> str:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise GridInputError(f"set {TOKEN_ENV} to the admin token the gateway was started with")
    return token


def _send(method: str, url: str, path: str, body: dict | None = None) -> int:
    import httpx

    headers = {"Authorization": f"Bearer {_token()}"}
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        print(f"grid fault: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        payload = response.json()
    except ValueError:
        payload = {"status": response.status_code, "body": response.text[:500]}
    if response.status_code != 200:
        message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
        hint = " (is GRID_ADMIN_TOKEN set for `grid up`?)" if response.status_code == 404 else ""
        print(f"grid fault: {response.status_code}: {message or payload}{hint}", file=sys.stderr)
        return 1
    print(json.dumps(payload, indent=2))
    return 0


def run_fault(args: argparse.Namespace) -> int:
    body = {"kind": args.kind}
    for name in ("zone", "population", "region", "factor", "add_ms", "duration_s"):
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    return _send("POST", args.url, "/admin/faults", body)


def run_recover(args: argparse.Namespace) -> int:
    return _send("POST", args.url, "/admin/recover", {"zone": args.zone} if args.zone else {})


def run_list(args: argparse.Namespace) -> int:
    return _send("GET", args.url, "/admin/faults")
