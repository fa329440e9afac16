"""Cache-aware routing on hand-built views: the router's prefix record, `prefix_aware`'s thresholds,
`latency_aware` crossing a region for a cached prefix only when the saved prefill pays for it, and
`kv_aware` reading the zones' reported cache summaries."""

from __future__ import annotations

from grid.dispatch.reports import apply_load_report
from grid.routing.cache_policies import held_units
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
    zones[0].outstanding = 12  # paris-0 runs 3 more per replica than the others: within the balance thresholds
    assert policy.choose(prompt([1, 2, 3, 4, 5], rid=1), [0, 1, 2], v) == 0  # 4/5 of the prompt cached there
    # A 1/5 match is below the cache threshold: by predicted TTFT, where 0.2 s of backlog outweighs
    # the 57 ms of prefill the one cached unit saves (51 ms at 10% utilization).
    zones[0].waiting = 12
    assert policy.choose(prompt([1, 6, 7, 8, 9], rid=2), [0, 1, 2], v) == 1


def test_prefix_aware_balances_when_load_is_skewed():
    zones = [zone(0, "paris"), zone(1, "paris")]
    v = view(zones, [5, 5])
    policy = make_policy("prefix_aware", 0)
    policy.choose(prompt([1, 2, 3]), [0, 1], v)
    zones[0].outstanding = 4 * 200  # 200 per replica vs 0: far out of balance
    zones[0].utilization = 0.9
    assert policy.choose(prompt([1, 2, 3, 4], rid=1), [0, 1], v) == 1


# --- kv_aware: the zones' own summaries, as reported ------------------------------------------------


def report(zv: ZoneView, at_s: float, units=None, *, outstanding: int = 0, waiting: int = 0, u: float = 0.1) -> None:
    apply_load_report(zv, outstanding, waiting, 0.0, u, 0.0, at_s, units)


def test_held_units_is_the_longest_leading_run_over_the_replicas_containers():
    chain = [1, 2, 3, 4, 5]
    assert held_units(chain, 5, ({1, 2}, {1, 2, 3, 4}, set())) == 4
    assert held_units(chain, 3, ({1, 2, 3, 4, 5},)) == 3  # never past the limit
    assert held_units(chain, 5, ({2, 3},)) == 0  # a chain breaks at its first unit
    assert held_units(chain, 5, ()) == 0


def test_kv_aware_goes_to_the_zone_reporting_the_prefix_when_load_allows():
    near, far = zone(0, "paris"), zone(1, "london")
    v = view([near, far], [5, 30])
    policy = make_policy("kv_aware", 0)
    chat = [10, 11, 12, 13]  # 2,048 tokens held in London: 0.2 s of prefill at 0.1 ms/token
    report(far, 0.0, ({10, 11}, {10, 11, 12, 13}))
    assert policy.choose(prompt(chat + [14]), [0, 1], v) == 1
    # Busy (80%: no headroom) but with no queue and balanced load, London still gets it: its utilization
    # counts the whole prompt of every request it admitted, cached or not.
    report(far, 0.0, ({10, 11, 12, 13},), outstanding=4, u=0.8)
    assert policy.choose(prompt(chat + [14], rid=1), [0, 1], v) == 1
    assert policy.choose(Request(2, 0, 2100, 50, 0.0), [0, 1], v) == 0  # no prefix: latency_aware


def test_kv_aware_leaves_an_overloaded_zone_holding_the_prefix():
    near, far = zone(0, "paris"), zone(1, "london")
    v = view([near, far], [5, 30])
    policy = make_policy("kv_aware", 0)
    chat = prompt([10, 11, 12, 13, 14])
    report(far, 0.0, ({10, 11, 12, 13},), outstanding=40, waiting=8, u=0.9)  # 2 waiting per replica
    assert policy.choose(chat, [0, 1], v) == 0
    report(far, 0.0, ({10, 11, 12, 13},), outstanding=200, u=0.9)  # no queue, but 50 per replica vs 0
    assert policy.choose(chat, [0, 1], v) == 0
    latency_blind = make_policy("latency_aware_no_cache", 0)
    report(far, 0.0, ({10, 11, 12, 13},))
    assert latency_blind.choose(chat, [0, 1], v) == 0  # knows no cache: the nearer


def test_kv_aware_uses_a_stale_summary_as_reported_until_the_next_one():
    near, far = zone(0, "paris"), zone(1, "london")
    v = view([near, far], [5, 30])
    policy = make_policy("kv_aware", 0)
    chat = prompt([10, 11, 12, 13, 14])
    report(far, 0.0, ({10, 11, 12, 13},))
    v.now_s = near.report_s = 1.9  # London's report (and its summary) is 1.9 s old
    assert policy.choose(chat, [0, 1], v) == 1
    report(far, 2.0)  # a load report without a summary keeps the last one
    assert far.cached_units == ({10, 11, 12, 13},) and far.cached_units_s == 0.0
    assert policy.choose(chat, [0, 1], v) == 1
    report(far, 4.0, ())  # the zone restarted: nothing cached, as of its report
    assert far.cached_units_s == 4.0
    assert policy.choose(chat, [0, 1], v) == 0
