"""Cache-aware routing on hand-built views: the router's prefix record, `prefix_aware`'s thresholds,
and `latency_aware` crossing a region for a cached prefix only when the saved prefill pays for it."""

from __future__ import annotations

from grid.routing.prefix_index import PrefixIndex
from grid.routing.registry import make_policy
from grid.routing.view import GridView, ZoneView
from grid.serving.request import Request

UNIT = 512  # a Mooncake hash unit


def zone(i: int, region: str, *, prefill_s_per_token: float = 0.0001, outstanding: int = 0) -> ZoneView:
    z = ZoneView(i, f"{region}-{i}", region, 4, 60.0, prefill_s_per_token, 0.05, 10.0, 300.0, kv_cache_tokens=1 << 20)
    z.utilization = 0.1
    z.outstanding = outstanding
    return z


def view(zones: list[ZoneView], rtt_ms: list[float]) -> GridView:
    v = GridView(zones=zones, rtt_s=[[ms / 1000 for ms in rtt_ms]], candidates=[])
    v.refresh_candidates()
    return v


def prompt(hashes: list[int], extra_tokens: int = 100, rid: int = 0) -> Request:
    tokens = len(hashes) * UNIT + extra_tokens
    return Request(rid, 0, tokens, 50, 0.0, prefix_hashes=tuple(hashes), prefix_block_tokens=UNIT)


def test_index_matches_leading_units_and_forgets_the_oldest_first():
    index = PrefixIndex([4 * UNIT])
    index.record(prompt([1, 2, 3]), 0)
    assert index.hit_tokens(prompt([1, 2, 3, 4]), 0) == 3 * UNIT
    assert index.hit_tokens(prompt([1, 9, 3]), 0) == UNIT  # a chain breaks at the first unknown unit
    index.record(prompt([7, 8]), 0)  # 5 units in a 4-unit room: the oldest, the tail of 1-2-3, goes
    assert index.hit_tokens(prompt([1, 2, 3]), 0) == 2 * UNIT
    assert index.tokens(0) == 4 * UNIT


def test_a_hit_never_covers_the_whole_prompt():
    index = PrefixIndex([1 << 20])
    whole = prompt([1, 2], extra_tokens=0)
    index.record(whole, 0)
    assert index.hit_tokens(whole, 0) == UNIT  # the engine computes the last prompt token: one unit short


def test_latency_aware_crosses_a_region_only_when_the_saved_prefill_outweighs_the_rtt():
    near, far = zone(0, "paris"), zone(1, "london")
    v = view([near, far], [5, 30])  # 25 ms more to London
    policy = make_policy("latency_aware", 0)
    long_chat = [10, 11, 12, 13]  # 2,048 cached tokens: 0.2 s of prefill saved at 0.1 ms/token
    policy.index = PrefixIndex([1 << 20, 1 << 20])
    policy.index.record(prompt(long_chat), 1)
    assert policy.choose(prompt(long_chat + [14]), [0, 1], v) == 1
    short = [20]  # one unit: 51 ms saved... at a tenth of the prefill cost, 5 ms: not worth 25 ms
    near.prefill_s_per_token = far.prefill_s_per_token = 0.00001
    policy.index.record(prompt(short), 1)
    assert policy.choose(prompt(short + [21]), [0, 1], v) == 0


def test_requests_without_prefixes_route_as_before():
    near, far = zone(0, "paris"), zone(1, "london")
    v = view([near, far], [5, 30])
    plain = Request(0, 0, 500, 50, 0.0)
    assert make_policy("latency_aware", 0).choose(plain, [0, 1], v) == 0
    assert make_policy("prefix_aware", 0).choose(plain, [0, 1], v) == 0


def test_prefix_aware_follows_a_long_match_while_the_grid_is_balanced():
    zones = [zone(0, "paris"), zone(1, "paris"), zone(2, "london")]
    v = view(zones, [5, 5, 30])
    policy = make_policy("prefix_aware", 0)
    first = prompt([1, 2, 3, 4])
    assert policy.choose(first, [0, 1, 2], v) == 0  # nothing cached: the nearest
    zones[0].outstanding = zones[0].waiting = 40  # paris-0 has a backlog, within the balance thresholds
    assert policy.choose(prompt([1, 2, 3, 4, 5], rid=1), [0, 1, 2], v) == 0  # 4/5 of the prompt cached there
    # A 1/5 match is below the cache threshold: by predicted TTFT, where 0.67 s of backlog outweighs
    # the 51 ms of prefill the one cached unit saves.
    assert policy.choose(prompt([1, 6, 7, 8, 9], rid=2), [0, 1, 2], v) == 1


def test_prefix_aware_balances_when_load_is_skewed():
    zones = [zone(0, "paris"), zone(1, "paris")]
    v = view(zones, [5, 5])
    policy = make_policy("prefix_aware", 0)
    policy.choose(prompt([1, 2, 3]), [0, 1], v)
    zones[0].outstanding = 4 * 200  # 200 per replica vs 0: far out of balance
    zones[0].utilization = 0.9
    assert policy.choose(prompt([1, 2, 3, 4], rid=1), [0, 1], v) == 1
