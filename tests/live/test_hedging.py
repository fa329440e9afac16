"""Hedged requests in the live gateway.

Two levels:
- the race itself, deterministic: the real gateway app and real `ZoneActor`s in this process (no Ray;
  `actor.method.remote()` is a task on the same loop), a policy that hedges every request to a known
  zone, and faults injected while both copies are in flight;
- the real thing: local Ray, uvicorn on a loopback port, the `hedged` policy (it learns its p95
  threshold from live first-token times) on a world with one much slower zone, under ~12 s of
  streaming and non-streaming load.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time

import httpx
import pytest
import ray

from grid.live.app import create_app
from grid.live.cluster import ZoneHandles
from grid.live.gateway import GatewaySettings
from grid.live.tokenizer import count
from grid.live.zone_actor import ZoneActor, zone_actor_args
from grid.live.zone_link import LocalZone
from grid.report import ZoneFigures, build_report
from grid.routing.policies import Hedged, LatencyAware
from grid.scenario import load_scenario
from grid.world import build_world

from .conftest import SMALL_SCENARIO, serve

FRANKFURT_1, FRANKFURT_2, MEXICO_1 = 0, 1, 2  # small.yaml's zones, in order


# --- policies that hedge on purpose ---------------------------------------------------------------


class HedgeToFrankfurt1(LatencyAware):
    """Routes to frankfurt-2 and hedges every request to frankfurt-1 after 50 ms (no budget limit)."""

    name = "hedge_to_frankfurt_1"
    hedge_budget = 1.0
    delay_s = 0.05

    def choose(self, request, candidates, view) -> int:
        return FRANKFURT_2 if FRANKFURT_2 in candidates else super().choose(request, candidates, view)

    def hedge_after_s(self, request, view) -> float:
        return self.delay_s

    def choose_hedge(self, request, candidates, view) -> int | None:
        return FRANKFURT_1 if FRANKFURT_1 in candidates else None


class HedgeAtOnce(HedgeToFrankfurt1):
    """The same, with the copy sent 5 ms after arrival: before any first token can exist."""

    name = "hedge_at_once"
    delay_s = 0.005


class NoBudget(HedgeToFrankfurt1):
    name = "no_budget"
    hedge_budget = 0.0


# --- the race, in process -------------------------------------------------------------------------


async def _local_grid(policy: type, body: dict, fault=None, slow: dict[int, float] | None = None):
    """One request through the real app on in-process zone actors; `fault(actors)` runs 0.15 s after
    it was sent. Returns (response, gateway, the zones' load reports once they have settled)."""
    scenario = load_scenario(str(SMALL_SCENARIO), {"routing.policy": f"{__name__}:{policy.__name__}"})
    world = build_world(scenario)
    actors = []
    for zone_id in world.zone_ids:
        args, kwargs = zone_actor_args(scenario, zone_id, 0.01)
        actors.append(ZoneActor(*args, **kwargs))
    handles = ZoneHandles([LocalZone(a) for a in actors], list(world.zone_ids), [a.region for a in actors], False)
    settings = GatewaySettings(request_timeout_s=10.0)
    app = create_app(scenario, handles, settings)
    gateway = app.state.gateway
    await gateway.start()
    try:
        for zi, factor in (slow or {}).items():
            await actors[zi].set_slow_factor(factor)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grid", timeout=20) as client:
            sent = asyncio.ensure_future(
                client.post("/v1/chat/completions", json=body, headers={"X-Grid-Population": "berlin"})
            )
            if fault is not None:
                await asyncio.sleep(0.15)
                await fault(actors)
            response = await sent
        await asyncio.sleep(0.05)  # let cancels land
        return response, gateway, [await actor.report() for actor in actors]
    finally:
        await gateway.stop()
        for actor in actors:
            if actor._task is not None:
                actor._task.cancel()


def _run(policy, stream=False, fault=None, slow=None, max_tokens=4):
    body = {
        "model": "grid-test/tiny-8B",
        "messages": [{"role": "user", "content": "Which copy answers first?"}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }
    return asyncio.run(_local_grid(policy, body, fault, slow))


def _content(response, stream: bool) -> str:
    assert response.status_code == 200, response.text
    if not stream:
        return response.json()["choices"][0]["message"]["content"]
    events = [b[len("data: ") :] for b in response.text.split("\n\n") if b.strip()]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [json.loads(e) for e in events[:-1]]
    assert not any("error" in c for c in chunks), chunks
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def _stats(gateway):
    return gateway.snapshot_stats()[0]  # a flushed copy


def _completed_at(gateway) -> list[int]:
    return _stats(gateway).completed.sum(axis=0).tolist()


@pytest.mark.parametrize("stream", [False, True])
def test_the_copy_wins_and_the_slow_original_is_cancelled(stream):
    response, gateway, reports = _run(HedgeToFrankfurt1, stream, slow={FRANKFURT_2: 200.0})
    assert count(_content(response, stream)) == 4  # the full answer, once
    assert response.headers["x-grid-zone"] == "frankfurt-1"  # the winner's zone
    assert response.headers["x-grid-hedge"] == "won"
    assert gateway.hedging.counts == {"sent": 1, "won": 1, "lost": 0, "failed": 0}
    assert _completed_at(gateway) == [1, 0, 0]  # counted once, at the winner
    assert int(_stats(gateway).output_tokens.sum()) == 4  # the loser's tokens are not served output
    assert [r["outstanding"] for r in reports] == [0, 0, 0]
    assert reports[FRANKFURT_2]["cancelled"] == 1  # withdrawn, not left to finish
    assert gateway.counts["retries"] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_the_original_wins_and_the_copy_is_cancelled(stream):
    response, gateway, reports = _run(HedgeAtOnce, stream, slow={FRANKFURT_1: 200.0})
    assert count(_content(response, stream)) == 4
    assert response.headers["x-grid-zone"] == "frankfurt-2"
    assert response.headers["x-grid-hedge"] == "lost"
    assert gateway.hedging.counts == {"sent": 1, "won": 0, "lost": 1, "failed": 0}
    assert _completed_at(gateway) == [0, 1, 0]
    assert [r["outstanding"] for r in reports] == [0, 0, 0]
    assert reports[FRANKFURT_1]["cancelled"] == 1


SLOW_BOTH = {FRANKFURT_1: 100.0, FRANKFURT_2: 100.0}  # no first token for ~0.5 s: faults land mid-race


def _fail_and_speed_up(failing: list[int], survivor: int | None):
    async def fault(actors):
        for zi in failing:
            await actors[zi].fail_all()
        if survivor is not None:
            await actors[survivor].set_slow_factor(1.0)

    return fault


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_copy_leaves_the_original_to_carry_on(stream):
    fault = _fail_and_speed_up([FRANKFURT_1], FRANKFURT_2)
    response, gateway, reports = _run(HedgeToFrankfurt1, stream, fault, SLOW_BOTH)
    assert count(_content(response, stream)) == 4
    assert [r["outstanding"] for r in reports] == [0, 0, 0]
    assert response.headers["x-grid-zone"] == "frankfurt-2"
    assert response.headers["x-grid-hedge"] == "failed"
    assert gateway.hedging.counts == {"sent": 1, "won": 0, "lost": 0, "failed": 1}
    assert gateway.counts["retries"] == 0  # one copy failing is no retry
    assert _completed_at(gateway) == [0, 1, 0]
    assert int(_stats(gateway).failed.sum()) == 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_original_leaves_the_copy_to_carry_on(stream):
    fault = _fail_and_speed_up([FRANKFURT_2], FRANKFURT_1)
    response, gateway, reports = _run(HedgeToFrankfurt1, stream, fault, SLOW_BOTH)
    assert count(_content(response, stream)) == 4
    assert [r["outstanding"] for r in reports] == [0, 0, 0]
    assert response.headers["x-grid-zone"] == "frankfurt-1"
    assert response.headers["x-grid-hedge"] == "won"
    assert gateway.hedging.counts == {"sent": 1, "won": 1, "lost": 0, "failed": 0}
    assert gateway.counts["retries"] == 0
    assert _completed_at(gateway) == [1, 0, 0]
    assert int(_stats(gateway).failed.sum()) == 0


def test_both_copies_failing_falls_back_to_a_retry_elsewhere():
    fault = _fail_and_speed_up([FRANKFURT_1, FRANKFURT_2], None)
    response, gateway, _ = _run(HedgeToFrankfurt1, False, fault, SLOW_BOTH)
    assert count(_content(response, False)) == 4
    assert response.headers["x-grid-zone"] == "mexico-1"  # neither zone a copy already failed on
    assert gateway.hedging.counts == {"sent": 1, "won": 0, "lost": 0, "failed": 1}
    assert gateway.counts["retries"] == 1
    assert _completed_at(gateway) == [0, 0, 1]
    stats = _stats(gateway)
    assert int(stats.failed.sum()) == 0
    # the retry is in RunStats as the simulator counts it: at the failed attempt's zone (a Frankfurt one)
    assert int(stats.retries.sum()) == 1 and int(stats.retries[:, 2].sum()) == 0
    world = gateway.world
    report = build_report(gateway.scenario, world, stats, [ZoneFigures(0.0, 0.0, 0.0)] * 3, 1.0, {}, 0)
    assert report.grid.retries == 1
    assert report.to_dict()["grid"]["retries"] == 1


def test_no_copy_beyond_the_budget_nor_for_policies_without_the_hooks():
    response, gateway, _ = _run(NoBudget, slow={FRANKFURT_2: 20.0})
    assert response.status_code == 200 and "x-grid-hedge" not in response.headers
    assert gateway.hedging.counts["sent"] == 0
    response, gateway, _ = _run(LatencyAware)
    assert response.status_code == 200 and "x-grid-hedge" not in response.headers
    assert gateway.hedging is None
    assert b"grid_hedges_total{" not in gateway.metrics.exposition()


# --- the real thing: Ray, uvicorn, policy `hedged` -------------------------------------------------

SLOW_ZONE = "frankfurt-2"
LOAD_S, RATE_RPS, SEED = 12.0, 20.0, 5


@pytest.fixture(scope="module")
def hedged_grid(ray_session):
    """small.yaml with frankfurt-2 30x slower from the start, routed by `hedged`."""
    overrides = {
        "faults": [{"at_s": 0, "kind": "zone_slow", "zone": SLOW_ZONE, "factor": 30}],
        "routing": {"policy": "hedged", "report_interval_s": 0.1},
    }
    with serve(load_scenario(str(SMALL_SCENARIO), overrides), GatewaySettings(request_timeout_s=60.0)) as grid:
        yield grid


async def _drive(url: str, model: str) -> list[dict]:
    """Open-loop Poisson load from Berlin (its three zones: two near, one across the Atlantic), half
    of it streamed; every answer parsed and checked for shape."""
    rng = random.Random(SEED)
    results: list[dict] = []
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(i: int) -> None:
            stream = i % 2 == 1
            max_tokens = rng.randint(4, 24)
            body = {
                "model": model,
                "messages": [{"role": "user", "content": " ".join(["word"] * rng.randint(5, 150))}],
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "stream": stream,
                "stream_options": {"include_usage": True} if stream else None,
            }
            if not stream:
                del body["stream_options"]
            r = await client.post("/v1/chat/completions", json=body, headers={"X-Grid-Population": "berlin"})
            results.append({"response": r, "stream": stream, "max_tokens": max_tokens})

        tasks = []
        start, t = time.monotonic(), 0.0
        while True:
            t += rng.expovariate(RATE_RPS)
            if t >= LOAD_S:
                break
            await asyncio.sleep(max(0.0, start + t - time.monotonic()))
            tasks.append(asyncio.create_task(one(len(tasks))))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=40)
    return results


def _check_answer(item: dict) -> tuple[str, int, int]:
    """(response id, gateway request id, completion tokens) of one well-formed answer; asserts its shape."""
    r = item["response"]
    assert r.status_code == 200, r.text
    if not item["stream"]:
        body = r.json()
        assert body["object"] == "chat.completion"
        content = body["choices"][0]["message"]["content"]
        assert body["choices"][0]["finish_reason"] == "length"
        usage = body["usage"]
        rid = body["id"]
    else:
        events = [b[len("data: ") :] for b in r.text.split("\n\n") if b.strip()]
        assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
        chunks = [json.loads(e) for e in events[:-1]]
        assert not any("error" in c for c in chunks), chunks
        assert len({c["id"] for c in chunks}) == 1  # one stream, not two interleaved
        content_chunks = [c for c in chunks if c["choices"]]
        content = "".join(c["choices"][0]["delta"].get("content", "") for c in content_chunks)
        assert content_chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert [c for c in content_chunks if c["choices"][0]["finish_reason"]] == content_chunks[-1:]
        usage = chunks[-1]["usage"]
        rid = chunks[0]["id"]
    assert usage["completion_tokens"] == count(content) == item["max_tokens"]
    return rid, int(rid.removeprefix("chatcmpl-")[:-12], 16), usage["completion_tokens"]


def test_hedged_live_grid(hedged_grid):
    gateway = hedged_grid.grid.gateway
    records = []
    gateway.on_request_end.append(records.append)  # the gateway's own view of each ended request
    results = asyncio.run(_drive(hedged_grid.url, hedged_grid.model))
    ended = time.monotonic()

    # Every client got exactly one complete, well-formed answer.
    answers = [_check_answer(item) for item in results]
    n = len(results)
    assert n >= 150 and len({rid for rid, _, _ in answers}) == n

    # Losers were cancelled at their zones: nothing is left running (a loser left to finish would
    # hold the 30x slower zone for seconds) and the zones withdrew at least one request per win.
    actors = hedged_grid.grid.zones.actors
    while True:
        reports = ray.get([a.report.remote() for a in actors])
        if all(r["outstanding"] == 0 for r in reports) or time.monotonic() - ended > 1.0:
            break
        time.sleep(0.05)
    assert [r["outstanding"] for r in reports] == [0, 0, 0]
    assert gateway.live == {}

    # Hedges were sent, some won, within the budget; one outcome each.
    hedges = hedged_grid.client.get("/grid/zones").json()["hedges"]
    assert hedges["sent"] > 0 and hedges["won"] > 0, hedges
    assert hedges["sent"] == hedges["won"] + hedges["lost"] + hedges["failed"]
    assert hedges["sent"] <= Hedged.hedge_budget * gateway.last_id + 1
    assert sum(r["cancelled"] for r in reports) >= hedges["won"]
    by_header = [item["response"].headers.get("x-grid-hedge") for item in results]
    assert sum(h is not None for h in by_header) == hedges["sent"]
    assert by_header.count("won") == hedges["won"]

    # Each request counted once, at the zone its client was told (the winner's), with its tokens only.
    zone_of = {rec.request_id: rec.zone for rec in records}
    assert len(records) == n
    for item, (_, request_id, _) in zip(results, answers, strict=True):
        assert item["response"].headers["x-grid-zone"] == zone_of[request_id]
    stats = _stats(gateway)
    assert int(stats.completed.sum()) == n and int(stats.failed.sum()) == 0 and int(stats.rejected.sum()) == 0
    assert int(stats.output_tokens.sum()) == sum(tokens for _, _, tokens in answers)

    # The metric, scraped.
    text = hedged_grid.client.get("/metrics").text
    samples = {}
    for line in text.splitlines():
        if line.startswith("grid_hedges_total{"):
            labels, value = line.rsplit(" ", 1)
            samples[labels] = float(value)
    assert math.isclose(sum(samples.values()), hedges["sent"])
    won = sum(v for k, v in samples.items() if 'outcome="won"' in k)
    assert won == hedges["won"] > 0
    assert all('population="berlin"' in k and 'model_name="grid-test/tiny-8B"' in k for k, v in samples.items() if v)
