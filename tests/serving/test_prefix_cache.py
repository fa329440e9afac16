"""Prefix reuse in the zone: hits skip prefill compute, counters, trace-block mapping, eviction, placement.

Toy profile (unchunked, so a prefill's time is its own): prefill 2 ms + 0.1 ms/token, decode 10 ms +
1 ms per sequence, 16-token KV blocks.
"""

from __future__ import annotations

import random

import pytest

from grid.scenario import GpuProfile
from grid.serving import zone as zone_module
from grid.serving.request import Request
from grid.serving.zone import Zone
from tests.serving.test_zone import Clock
from tests.serving.test_zone import profile as zone_profile


def profile(**changes) -> GpuProfile:
    """test_zone's small engine, with vLLM's 16-token blocks."""
    return zone_profile(**({"block_tokens": 16} | changes))


class PrefixClock(Clock):
    def send(self, prompt: int, output: int, hashes, unit: int = 16, at: float | None = None) -> Request:
        self.run_until(self.now if at is None else at)
        request = Request(self.ids, 0, prompt, output, self.now, prefix_hashes=tuple(hashes), prefix_block_tokens=unit)
        self.ids += 1
        assert self.zone.admit(request, self.now)
        return request


def prefill_s(tokens: int) -> float:
    return 0.002 + 0.0001 * tokens


def test_a_hit_skips_the_prefill_of_the_cached_tokens_and_is_counted():
    clock = PrefixClock(Zone(profile(), replicas=1, max_queue=10))
    first = clock.send(64, 2, (1, 2, 3, 4))
    clock.drain()
    assert first.cached_tokens == 0
    second = clock.send(80, 2, (1, 2, 3, 4, 5), at=1.0)
    clock.drain()
    assert second.cached_tokens == 64
    assert second.first_token_s - second.scheduled_s == pytest.approx(prefill_s(16))
    zone = clock.zone
    assert (zone.prefix_cache_queries_tokens, zone.prefix_cache_hits_tokens) == (64 + 80, 64)
    assert zone.kv_used == 0 and zone.kv_cached_tokens() == 5 * 16


def test_a_fully_cached_prompt_still_computes_its_last_block():
    clock = PrefixClock(Zone(profile(), replicas=1, max_queue=10))
    clock.send(64, 2, (1, 2, 3, 4))
    clock.drain()
    again = clock.send(64, 2, (1, 2, 3, 4), at=1.0)
    clock.drain()
    assert again.cached_tokens == 48  # vLLM recomputes the last token: its block is not a hit
    assert again.first_token_s - again.scheduled_s == pytest.approx(prefill_s(16))


def test_trace_blocks_of_512_tokens_hit_in_whole_trace_blocks():
    clock = PrefixClock(Zone(profile(), replicas=1, max_queue=10))
    clock.send(1100, 2, ("a", "b"), unit=512)  # two full trace blocks, 76 tokens past them
    clock.drain()
    same = clock.send(1100, 2, ("a", "b"), unit=512, at=1.0)
    fork = clock.send(1100, 2, ("a", "c"), unit=512, at=2.0)
    clock.drain()
    assert same.cached_tokens == 1024 and fork.cached_tokens == 512


def test_answer_units_are_cached_for_the_next_turn():
    clock = PrefixClock(Zone(profile(), replicas=1, max_queue=10))
    clock.send(32, 32, (1, 2, 3, 4))  # hashes past the prompt describe the answer
    clock.drain()
    turn2 = clock.send(80, 2, (1, 2, 3, 4, 5), at=1.0)
    clock.drain()
    assert turn2.cached_tokens == 64


def test_requests_without_prefix_information_never_touch_the_index():
    clock = Clock(Zone(profile(), replicas=2, max_queue=10))
    requests = [clock.submit(prompt=100, output=5)[0] for _ in range(4)]
    clock.drain()
    zone = clock.zone
    assert all(r.cached_tokens == 0 for r in requests)
    assert all(len(e.kv) == 0 and e.kv.held_blocks == 0 for e in zone._engines)
    assert zone.prefix_cache_hits_tokens == 0 and zone.prefix_cache_queries_tokens == 400


def test_kv_is_reserved_in_whole_blocks_less_the_shared_prefix():
    clock = PrefixClock(Zone(profile(), replicas=1, max_queue=10))
    a = clock.send(64, 20, (1, 2, 3, 4))  # 84 tokens → 6 blocks
    assert clock.zone.kv_used == 6 * 16
    clock.run_until(0.02)  # its prefill (8.4 ms) is done
    assert a.first_token_s > 0
    b = clock.send(64, 20, (1, 2, 3, 4))  # shares a's 4 prompt blocks (48 tokens hit), 2 blocks of its own
    assert b.cached_tokens == 48
    assert clock.zone.kv_used == 8 * 16
    clock.drain()
    assert clock.zone.kv_used == 0


def test_memory_pressure_evicts_least_recently_used_prefixes_tail_first():
    clock = PrefixClock(Zone(profile(kv_cache_tokens=10 * 16), replicas=1, max_queue=10))
    clock.send(64, 16, (1, 2, 3, 4))
    clock.drain()
    clock.send(64, 16, (11, 12, 13, 14), at=1.0)
    clock.drain()
    assert clock.zone.kv_cached_tokens() == 8 * 16
    clock.send(48, 16, (21, 22, 23), at=2.0)  # 4 blocks: 4 + 8 cached > 10, the 2 oldest units go
    clock.drain()
    old = clock.send(64, 16, (1, 2, 3, 4), at=3.0)
    clock.drain()
    assert old.cached_tokens == 32  # its chain lost its last two units, its beginning survived


def test_placement_follows_a_long_cached_prefix_while_loads_are_balanced(monkeypatch):
    clock = PrefixClock(Zone(profile(), replicas=2, max_queue=10))
    first = clock.send(64, 500, (1, 2, 3, 4))
    clock.run_until(0.02)
    assert first.first_token_s > 0
    follow = [clock.send(80, 500, (1, 2, 3, 4, 5 + i)) for i in range(2)]
    assert all(r.replica == first.replica and r.cached_tokens == 64 for r in follow)  # 80% cached
    # A short shared prefix (a system prompt) is not worth it: the least loaded engine takes it.
    short = clock.send(320, 2, (1, *range(100, 119)))
    assert short.replica != first.replica and short.cached_tokens == 0
    # Engines far apart in load (3 sequences against 1, with the thresholds lowered): the least
    # loaded one, whatever is cached.
    monkeypatch.setattr(zone_module, "PREFIX_BALANCE_ABS", 1)
    other = clock.send(80, 2, (1, 2, 3, 4, 9))
    assert other.replica == short.replica and other.cached_tokens == 0  # short is not computed yet


def test_failing_the_zone_loses_its_caches():
    clock = PrefixClock(Zone(profile(), replicas=1, max_queue=10))
    clock.send(64, 2, (1, 2, 3, 4))
    clock.drain()
    clock.zone.fail_all(1.0)
    clock.zone.restore(1.0)
    again = clock.send(80, 2, (1, 2, 3, 4, 5), at=1.0)
    clock.drain()
    assert again.cached_tokens == 0


def test_prefix_hashes_need_their_block_size():
    with pytest.raises(ValueError, match="prefix_block_tokens"):
        Request(0, 0, 10, 10, 0.0, prefix_hashes=(1,))


@pytest.mark.parametrize("is_chunked", [True, False])
def test_random_sessions_with_cancels_and_slowdowns_release_every_block(is_chunked):
    """Conversations sharing a system prompt, turns growing on the last, some cancelled mid-flight,
    a slow-down: every request ends once, hits never exceed the prompt, and all KV comes back."""
    rng = random.Random(11)
    zone = Zone(profile(chunked_prefill=is_chunked, kv_cache_tokens=4000, max_num_batched_tokens=512), 3, 1000)
    clock = PrefixClock(zone)
    sessions = [[0, 1 + s % 3] for s in range(12)]  # (tokens so far, system prompt id)
    sent: list[Request] = []
    for i in range(300):
        s = sessions[rng.randrange(len(sessions))]
        prompt = s[0] + rng.randint(5, 120)
        answer = rng.randint(1, 60)
        units = (prompt + answer) // 16
        hashes = [s[1] * 1000 + k for k in range(min(units, 2))] + [id(s) * 1000 + k for k in range(2, units)]
        request = clock.send(prompt, answer, hashes, at=0.004 * i)
        sent.append(request)
        s[0] = prompt + answer if prompt + answer < 1500 else 0
        if i == 150:
            zone.set_slow_factor(2.0, clock.now)
        if rng.random() < 0.1:
            victim = sent[rng.randrange(len(sent))]
            zone.cancel(victim, clock.now)
    clock.drain()
    ended = [r for r in sent if r.status]
    assert len(ended) == len(sent)
    assert all(0 <= r.cached_tokens < r.prompt_tokens for r in sent)
    assert zone.prefix_cache_hits_tokens > 0
    assert zone.kv_used == zone.in_system == zone.queued == 0
    assert all(e.kv.held_blocks == 0 and e.kv.cached_blocks <= e.kv.capacity_blocks for e in zone._engines)
