"""Live prefix caching through the real gateway: real prompts hashed into KV blocks, hits reported as
OpenAI does (`usage.prompt_tokens_details.cached_tokens`) and in `x-grid-cached-tokens`."""

from __future__ import annotations

import json
import random
import time

import httpx
import pytest

from grid.live import tokenizer
from grid.live.gateway import GatewaySettings
from grid.live.prefix_hashes import BLOCK_TOKENS, block_hashes
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, serve

pytestmark = pytest.mark.live


def test_block_hashes_name_whole_prefixes():
    a = list(range(40))
    b = a[:16] + [999] + a[17:]  # differs in the second block only
    ha, hb = block_hashes(a), block_hashes(b)
    assert len(ha) == 2 and ha[0] == hb[0] and ha[1] != hb[1]
    assert block_hashes(a[:15]) is None
    assert block_hashes(a + [7]) == ha  # a partial block is not cached
    assert block_hashes([9] + a[1:])[1] != ha[1]  # a later block names everything before it too


def _chat(live, messages, stream=False, population="berlin"):
    body = {"model": live.model, "messages": messages, "max_tokens": 4, "ignore_eos": True}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {"x-grid-population": population}
    if not stream:
        response = live.client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.headers, response.json()["usage"]
    with httpx.stream("POST", f"{live.url}/v1/chat/completions", json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        usage = json.loads(events[-2])["usage"]  # the usage chunk, before [DONE]
        return response.headers, usage


def test_a_shared_system_prompt_and_a_conversation_hit_the_zone_cache(live):
    system = f"You are agent {random.random()}. " + "Follow the house rules carefully. " * 60
    first = [{"role": "system", "content": system}, {"role": "user", "content": "Hello there"}]
    headers, usage = _chat(live, first)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0 and headers["x-grid-cached-tokens"] == "0"
    # The same system prompt and a new question: its blocks are cached where the first one went
    # (latency_aware learns what it sent where), all but the blocks after the system prompt.
    second = [first[0], {"role": "user", "content": "Another question"}]
    headers, usage = _chat(live, second, stream=True)
    system_ids = tokenizer.prompt_ids(f"<|im_start|>system\n{system}<|im_end|>\n")
    shared = len(system_ids) // BLOCK_TOKENS * BLOCK_TOKENS
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert shared - BLOCK_TOKENS <= cached <= shared and cached % BLOCK_TOKENS == 0, (cached, shared)
    assert headers["x-grid-cached-tokens"] == str(cached)
    # A conversation's next turn resends the whole of the previous prompt: every full block of it hits.
    third = second + [{"role": "assistant", "content": "An answer."}, {"role": "user", "content": "And then?"}]
    headers, usage = _chat(live, third)
    previous = len(tokenizer.prompt_ids(tokenizer.chat_prompt([(m["role"], m["content"]) for m in second])))
    assert usage["prompt_tokens_details"]["cached_tokens"] >= previous // BLOCK_TOKENS * BLOCK_TOKENS - BLOCK_TOKENS
    metrics = live.client.get("/metrics").text
    hits = sum(
        float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("vllm:prefix_cache_hits_total{")
    )
    assert hits >= cached


def test_token_id_prompts_share_blocks_as_their_ids_do(live):
    base = [random.randrange(1000, 100_000) for _ in range(200)]
    body = {"model": live.model, "max_tokens": 2, "ignore_eos": True}
    headers = {"x-grid-population": "berlin"}
    assert live.client.post("/v1/completions", json=body | {"prompt": base}, headers=headers).status_code == 200
    response = live.client.post("/v1/completions", json=body | {"prompt": base[:100] + [5, 6, 7]}, headers=headers)
    assert response.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 96  # 6 full blocks of the 100


def test_the_dashboard_shows_each_zones_hit_rate(live):
    system = f"Shared {random.random()} " + "rules and context " * 80
    for question in ("one", "two"):
        _chat(live, [{"role": "system", "content": system}, {"role": "user", "content": question}])
    rates = [z["prefix_cache_hit_rate"] for z in live.client.get("/grid/zones").json()["zones"]]
    assert any(rate is not None and rate > 0 for rate in rates), rates


def test_kv_aware_routes_live_on_the_zones_reported_caches(ray_session):
    """`kv_aware` reads what the zones report they hold: New York's nearest zone is Mexico (69 ms vs
    83 ms), but once Frankfurt reports a long prompt's blocks, the prefill they save outweighs the
    extra 14 ms and the same prompt goes there, hitting."""
    scenario = load_scenario(str(SMALL_SCENARIO), {"routing.policy": "kv_aware", "network.jitter_ratio": 0.0})
    with serve(scenario, GatewaySettings()) as grid:
        system = f"Manual {random.random()}. " + "Every clause of the long operating manual applies here. " * 150
        first = [{"role": "system", "content": system}, {"role": "user", "content": "Hello there"}]
        headers, _ = _chat(grid, first, population="berlin")
        cached_zone = headers["x-grid-zone"]
        assert cached_zone.startswith("frankfurt")
        time.sleep(3 * scenario.routing.report_interval_s + 0.2)  # the zones' next reports carry it
        headers, usage = _chat(grid, [first[0], {"role": "user", "content": "Again"}], population="new_york")
        assert headers["x-grid-zone"] == cached_zone, headers
        assert usage["prompt_tokens_details"]["cached_tokens"] > 1000
        # Without the system prompt in any cache, New York is served nearest.
        fresh = [{"role": "system", "content": "Other " + system}, {"role": "user", "content": "Hi"}]
        headers, usage = _chat(grid, fresh, population="new_york")
        assert headers["x-grid-zone"] == "mexico-1" and usage["prompt_tokens_details"]["cached_tokens"] == 0
