"""grid.serving.kv_cache.KvCache: block accounting, prefix units, LRU eviction, against a plain model."""

from __future__ import annotations

import random

import pytest

from grid.serving.kv_cache import KvCache


def test_unit_blocks_map_trace_blocks_onto_cache_blocks():
    kv = KvCache(capacity_blocks=1000, block_tokens=16)
    assert [kv.unit_blocks(k, 512) for k in range(3)] == [32, 32, 32]  # Mooncake's 512-token hash_ids
    assert [kv.unit_blocks(k, 16) for k in range(3)] == [1, 1, 1]  # vLLM's own blocks
    # A unit size that is no multiple of the block: each unit owns the blocks that end inside it.
    assert [kv.unit_blocks(k, 100) for k in range(4)] == [6, 6, 6, 7]
    assert kv.units_blocks(4, 100) == 25 == 400 // 16


def test_reserve_and_free_touch_no_index():
    kv = KvCache(capacity_blocks=10, block_tokens=16)
    kv.reserve(7)
    assert kv.held_blocks == 7 and kv.cached_blocks == 0 and len(kv) == 0
    kv.free(7)
    assert kv.held_blocks == 0


def test_a_finished_prefix_stays_cached_and_is_found_again():
    kv = KvCache(capacity_blocks=100, block_tokens=16)
    hashes = (11, 12, 13)
    assert kv.match(hashes, 3) == 0
    assert kv.hold(hashes, 0, 16, 5) == 0  # 3 prompt blocks + 2 for the answer, nothing cached yet
    kv.insert(hashes, 0, 3, 16)  # the prefill completed: its blocks become cached units it holds
    assert kv.held_blocks == 5 and len(kv) == 3
    assert kv.match(hashes, 3) == 3
    assert kv.evictable_blocks(hashes, 3, 16) == 0  # held, so nothing to take from the evictable pool
    kv.release(hashes, 3, 16, 2)
    assert kv.held_blocks == 0 and kv.cached_blocks == 3
    assert kv.match((11, 12, 99), 3) == 2  # the chain matches up to where it differs
    assert kv.evictable_blocks((11, 12, 99), 2, 16) == 2
    assert kv.hold((11, 12, 99), 2, 16, 5) == 2
    assert kv.held_blocks == 5 and kv.cached_blocks == 1


def test_lru_evicts_a_chain_from_its_end_oldest_chain_first():
    kv = KvCache(capacity_blocks=10, block_tokens=16)
    for chain in ((1, 2, 3, 4), (11, 12, 13, 14)):
        kv.hold(chain, 0, 16, 5)
        kv.insert(chain, 0, 4, 16)
        kv.release(chain, 4, 16, 1)
    assert kv.cached_blocks == 8 and kv.held_blocks == 0
    kv.reserve(4)  # 4 + 8 > 10: the two least recently used units go, the first chain's tail
    assert kv.cached_blocks == 6 and kv.held_blocks == 4
    assert kv.match((1, 2, 3, 4), 4) == 2
    assert kv.match((11, 12, 13, 14), 4) == 4


def test_a_misleading_non_chain_is_held_only_as_far_as_it_is_cached():
    kv = KvCache(capacity_blocks=100, block_tokens=16)
    kv.hold((1, 2, 3), 0, 16, 3)
    kv.insert((1, 2, 3), 0, 3, 16)
    # Not a chain (unit 1 unknown, unit 2 reused at a later position): bisection may overestimate,
    # holding stops at the first unit that is not there and the rest is taken as new blocks.
    assert kv.hold((1, 99, 3), 3, 16, 4) == 1
    assert kv.held_blocks == 3 + 3


def test_a_unit_computed_twice_is_shared_and_the_copy_freed():
    kv = KvCache(capacity_blocks=100, block_tokens=16)
    a, b = (1, 2), (1, 2)
    kv.hold(a, 0, 16, 3)
    kv.hold(b, 0, 16, 3)  # both prefill the same prompt at once (neither found it cached)
    kv.insert(a, 0, 2, 16)
    kv.insert(b, 0, 2, 16)
    assert kv.held_blocks == 4  # two shared units + one answer block each
    kv.release(a, 2, 16, 1)
    kv.release(b, 2, 16, 1)
    assert kv.held_blocks == 0 and kv.cached_blocks == 2


def test_random_operations_match_a_plain_model():
    """Every count equals what a per-unit recount says, under random sequences sharing prefixes."""
    rng = random.Random(3)
    unit = 48  # three 16-token blocks per unit
    kv = KvCache(capacity_blocks=60, block_tokens=16)
    live: list[tuple[tuple[int, ...], int, int]] = []  # (hashes, units held, own blocks)
    for _ in range(3000):
        if live and (rng.random() < 0.45 or kv.held_blocks > 45):
            hashes, units, own = live.pop(rng.randrange(len(live)))
            kv.release(hashes, units, unit, own)
        else:
            root = rng.randrange(4)
            chain = tuple(root * 100 + i for i in range(rng.randint(1, 5)))  # chains sharing prefixes
            total = kv.units_blocks(len(chain), unit) + rng.randint(1, 4)
            n = kv.match(chain, len(chain))
            assert all(h in kv._refs for h in chain[:n]) and (n == len(chain) or chain[n] not in kv._refs)
            own = total - kv.units_blocks(n, unit)
            if kv.held_blocks + own + kv.evictable_blocks(chain, n, unit) > kv.capacity_blocks:
                continue
            assert kv.hold(chain, n, unit, total) == n
            if rng.random() < 0.8:  # its prefill completed
                kv.insert(chain, n, len(chain), unit)
                own -= kv.units_blocks(len(chain), unit) - kv.units_blocks(n, unit)
                n = len(chain)
            live.append((chain, n, own))
        refs: dict[int, int] = {}
        for hashes, units, _ in live:
            for h in hashes[:units]:
                refs[h] = refs.get(h, 0) + 1
        held_units = sum(3 for h in refs)
        assert kv.held_blocks == held_units + sum(own for *_, own in live)
        assert set(kv._refs) >= set(refs)
        assert kv.cached_blocks == 3 * sum(1 for h, r in kv._refs.items() if r == 0)
        assert all(kv._refs[h] == r for h, r in refs.items())
        assert kv.held_blocks + kv.cached_blocks <= kv.capacity_blocks


@pytest.mark.parametrize("unit", [16, 512])
def test_lookup_cost_is_per_unit_not_per_block(unit):
    kv = KvCache(capacity_blocks=10**6, block_tokens=16)
    chain = tuple(range(20))
    kv.hold(chain, 0, unit, kv.units_blocks(20, unit))
    kv.insert(chain, 0, 20, unit)
    kv.release(chain, 20, unit, 0)
    assert kv.match(chain, 20) == 20 and kv.cached_blocks == 20 * unit // 16
    kv.hold(chain, 20, unit, kv.units_blocks(20, unit))
    assert len(kv) == 20  # one entry per unit whatever the unit spans
    assert kv.held_blocks == 20 * unit // 16 and kv.cached_blocks == 0
