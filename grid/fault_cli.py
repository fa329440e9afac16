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

from grid.cli_args import duration_arg, positive_duration_arg, positive_float_arg, positive_int_arg
from grid.errors import GridInputError
from grid.fault_kinds import FAULT_FIELDS, TARGET_FIELDS

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_ENV = "GRID_ADMIN_TOKEN"


def _delay_ms(text: str) -> float:
    value = duration_arg(text) * 1000.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text!r}")
    return value


_HELP = {
    "zone_down": "kill a zone's actor; it restarts and stays down for the window",
    "zone_slow": "multiply a zone's step times",
    "link_delay": "add RTT between a population and a region",
    "partition": "cut the path between a population and a region",
    "spot_preempt": "the spot market takes back a zone's spot replicas (after autoscaling.spot.notice_s)",
}
# A fault's fields that are options; its targets (zone, population, region) are positional arguments.
_OPTIONS = {
    "factor": (("--factor",), {"type": positive_float_arg, "required": True}),
    "add_ms": (("--add",), {"dest": "add_ms", "type": _delay_ms, "required": True, "help": "e.g. 200ms"}),
    "replicas": (("--replicas",), {"type": positive_int_arg, "required": True, "help": "spot replicas taken"}),
}


def add_fault_parser(subparsers) -> argparse.ArgumentParser:
    fault = subparsers.add_parser("fault", help="inject or end faults on a running live grid (admin API)")
    kinds = fault.add_subparsers(dest="fault_command", required=True, metavar="FAULT")

    def common(parser: argparse.ArgumentParser, duration: bool = True) -> None:
        parser.add_argument("--url", default=DEFAULT_URL, help=f"the gateway (default {DEFAULT_URL})")
        if duration:
            parser.add_argument(
                "--for", dest="duration_s", type=positive_duration_arg, help="end the fault after this long, e.g. 30s"
            )

    for kind, fields in FAULT_FIELDS.items():
        p = kinds.add_parser(kind.replace("_", "-"), help=_HELP[kind])
        for name in fields:
            if name in TARGET_FIELDS:
                p.add_argument(name)
            else:
                flags, options = _OPTIONS[name]
                p.add_argument(*flags, **options)
        common(p)
        p.set_defaults(run=run_fault, kind=kind)

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


def admin_call(command: str, method: str, url: str, path: str, body: dict | None = None) -> tuple[int, object] | None:
    """One admin API call with the admin token: (status, JSON payload or the body's start); None,
    said on stderr, when the gateway cannot be reached. `command` ("grid fault") starts the message."""
    import httpx

    headers = {"Authorization": f"Bearer {_token()}"}
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        print(f"{command}: cannot reach {url}: {exc}", file=sys.stderr)
        return None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"status": response.status_code, "body": response.text[:500]}


def error_message(payload: object) -> str | None:
    """The message of an OpenAI-shaped error payload, if it is one."""
    error = payload.get("error", {}) if isinstance(payload, dict) else {}
    return error.get("message") if isinstance(error, dict) else None


def _send(method: str, url: str, path: str, body: dict | None = None) -> int:
    answer = admin_call("grid fault", method, url, path, body)
    if answer is None:
        return 1
    status, payload = answer
    if status != 200:
        hint = f" (is {TOKEN_ENV} set for `grid up`?)" if status == 404 else ""
        print(f"grid fault: {status}: {error_message(payload) or payload}{hint}", file=sys.stderr)
        return 1
    print(json.dumps(payload, indent=2))
    return 0


def run_fault(args: argparse.Namespace) -> int:
    body = {"kind": args.kind}
    for name in (*FAULT_FIELDS[args.kind], "duration_s"):
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    return _send("POST", args.url, "/admin/faults", body)


def run_recover(args: argparse.Namespace) -> int:
    return _send("POST", args.url, "/admin/recover", {"zone": args.zone} if args.zone else {})


def run_list(args: argparse.Namespace) -> int:
    return _send("GET", args.url, "/admin/faults")
