"""Chaos drills against a running gateway: open-loop load, zone kills through the admin API, and the
client-side tally that must reconcile with the gateway's own counters.

Used by `benchmarks/chaos_drill.py` (≥ 2 min, a kill every 15 s) and by the short drill in
`tests/live/test_chaos.py` (one kill). Everything talks HTTP to 127.0.0.1 only.

Each request's outcome, as the client sees it:
- `completed`: a 200 answer, or a stream that ends with a `finish_reason` and `[DONE]`;
- `failed_midstream`: a stream that delivered tokens and then an `error` event (its zone died);
- `failed`: a 5xx before any token (zone down/failed/unreachable after retries, deadline);
- `rejected`: 429 or 503 `no_zone_available` (admission control: nothing was served);
- `lost`: no complete answer before the client's deadline (a hang, a cut connection) — must be 0;
- `unexpected`: any other status (a 4xx on a valid request) — must be 0.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

REJECTED_CODES = {"overloaded", "gateway_overloaded", "no_zone_available"}


@dataclass
class Outcome:
    kind: str
    zone: str | None
    sent_s: float
    ended_s: float
    status: int
    code: str | None = None
    attempts: int = 1


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    kills: list[dict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = Counter(o.kind for o in self.outcomes)
        return {
            k: counts.get(k, 0) for k in ("completed", "failed_midstream", "failed", "rejected", "lost", "unexpected")
        }

    def to_dict(self) -> dict:
        return {
            "sent": len(self.outcomes),
            "counts": self.counts(),
            "retried": sum(1 for o in self.outcomes if o.attempts > 1),
            "midstream_zones": sorted({o.zone for o in self.outcomes if o.kind == "failed_midstream" and o.zone}),
            "errors": dict(Counter(o.code for o in self.outcomes if o.code)),
            "max_latency_s": max((o.ended_s - o.sent_s for o in self.outcomes), default=0.0),
            "kills": self.kills,
        }


async def one_request(client: httpx.AsyncClient, model: str, population: str, stream: bool, tokens: int, t0: float):
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Route me to the nearest healthy zone, please."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": stream,
    }
    sent = time.monotonic() - t0
    zone, status, code, attempts = None, 0, None, 1
    try:
        if not stream:
            response = await client.post("/v1/chat/completions", json=body, headers={"X-Grid-Population": population})
            status = response.status_code
            zone = response.headers.get("x-grid-zone")
            attempts = int(response.headers.get("x-grid-attempts", "1"))
            kind = _classify_status(status, response)
            if status != 200:
                code = _error_code(response)
            return Outcome(kind, zone, sent, time.monotonic() - t0, status, code, attempts)
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"X-Grid-Population": population}
        ) as response:
            status = response.status_code
            zone = response.headers.get("x-grid-zone")
            attempts = int(response.headers.get("x-grid-attempts", "1"))
            if status != 200:
                await response.aread()
                code = _error_code(response)
                return Outcome(_classify_status(status, response), zone, sent, time.monotonic() - t0, status, code)
            got_tokens = finished = done = False
            error_code = None
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    error_code = event["error"].get("code")
                    continue
                for choice in event.get("choices", []):
                    if choice.get("delta", {}).get("content"):
                        got_tokens = True
                    if choice.get("finish_reason"):
                        finished = True
            ended = time.monotonic() - t0
            if done and error_code is not None:
                kind = "failed_midstream" if got_tokens else "failed"
                return Outcome(kind, zone, sent, ended, status, error_code, attempts)
            kind = "completed" if done and finished else "lost"
            return Outcome(kind, zone, sent, ended, status, None, attempts)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Outcome("lost", zone, sent, time.monotonic() - t0, status, type(exc).__name__, attempts)


def _error_code(response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except Exception:
        return None


def _classify_status(status: int, response) -> str:
    if status == 200:
        return "completed"
    code = _error_code(response)
    if status == 429 or code in REJECTED_CODES:
        return "rejected"
    if status >= 500:
        return "failed"
    return "unexpected"


async def drive(
    url: str,
    model: str,
    populations: list[str],
    zones: list[str],
    duration_s: float,
    rate_rps: float,
    admin_token: str | None = None,
    kill_every_s: float = 15.0,
    first_kill_s: float = 5.0,
    down_s: float = 5.0,
    stream_share: float = 0.5,
    client_timeout_s: float = 60.0,
    tokens: tuple[int, int] = (10, 60),
    seed: int = 0,
) -> Tally:
    """Poisson arrivals at `rate_rps` for `duration_s`; a random zone killed every `kill_every_s`
    (from `first_kill_s`, for `down_s`) when `admin_token` is given. Waits for every answer."""
    rng = random.Random(seed)
    tally = Tally()
    limits = httpx.Limits(max_connections=2048, max_keepalive_connections=2048)
    timeout = httpx.Timeout(client_timeout_s, connect=10.0)
    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def killer() -> None:
            last = None
            at = first_kill_s
            while admin_token and at < duration_s:
                await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
                zone = rng.choice([z for z in zones if z != last] or zones)
                last = zone
                r = await client.post(
                    "/admin/faults",
                    json={"kind": "zone_down", "zone": zone, "duration_s": down_s},
                    headers={"Authorization": f"Bearer {admin_token}"},
                )
                r.raise_for_status()
                tally.kills.append(
                    {"at_s": round(time.monotonic() - t0, 3), "zone": zone, "id": r.json()["fault"]["id"]}
                )
                at += kill_every_s

        async def record(task_coro) -> None:
            tally.outcomes.append(await task_coro)

        kill_task = asyncio.create_task(killer())
        tasks = []
        t = rng.expovariate(rate_rps)
        while t < duration_s:
            await asyncio.sleep(max(0.0, t - (time.monotonic() - t0)))
            coro = one_request(
                client,
                model,
                rng.choice(populations),
                rng.random() < stream_share,
                rng.randint(*tokens),
                t0,
            )
            tasks.append(asyncio.create_task(record(coro)))
            t += rng.expovariate(rate_rps)
        await kill_task
        await asyncio.gather(*tasks)
        if admin_token and tally.kills:
            await asyncio.sleep(down_s + 1.0)  # let the last window end so its figures are complete
            r = await client.get("/admin/faults", headers={"Authorization": f"Bearer {admin_token}"})
            by_id = {f["id"]: f for f in r.json()["history"]}
            for kill in tally.kills:
                kill.update({k: v for k, v in by_id.get(kill["id"], {}).items() if k not in ("id", "zone")})
    return tally


def server_counts(metrics_text: str) -> dict[str, int]:
    """grid_requests_total summed by outcome: completed (stop+length), failed (error+cancelled), rejected."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = Counter()
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "grid_requests":
            continue
        for sample in family.samples:
            if sample.name == "grid_requests_total":
                totals[sample.labels["status"]] += int(sample.value)
    return {
        "completed": totals["stop"] + totals["length"],
        "failed": totals["error"] + totals["cancelled"],
        "rejected": totals["rejected"],
    }


def client_counts(tally: Tally) -> dict[str, int]:
    c = tally.counts()
    return {
        "completed": c["completed"],
        "failed": c["failed"] + c["failed_midstream"] + c["lost"],
        "rejected": c["rejected"],
    }


def run_stats_counts(stats) -> dict[str, int]:
    return {
        "completed": int(stats.completed.sum()),
        "failed": int(stats.failed.sum()),
        "rejected": int(stats.rejected.sum()),
    }


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def _child(kwargs: dict, queue) -> None:
    queue.put(asyncio.run(drive(**kwargs)))


def drive_in_process(timeout_s: float, **kwargs) -> Tally:
    """`drive` in a child process (spawn), so the client does not share the gateway's interpreter."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(kwargs, queue), daemon=True)
    process.start()
    try:
        return queue.get(timeout=timeout_s)
    finally:
        process.join(10)
        if process.is_alive():
            process.terminate()
