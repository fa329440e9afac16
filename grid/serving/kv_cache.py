"""One replica's paged KV cache with automatic prefix caching, as vLLM's, counted in blocks.

KV lives in fixed-size blocks of `block_tokens` tokens. A live sequence holds the blocks it needs;
blocks of a prompt prefix are shared between sequences and identified by a chain hash (the hash of
the whole prefix up to the block's end). When no live sequence holds a cached block any more it stays
in memory, evictable, until an allocation needs the room: then the least recently used goes first.

A request's prefix comes as hash *units* of `unit_tokens` tokens each (`Request.prefix_hashes`,
`Request.prefix_block_tokens`): 16-token units are vLLM's own blocks, 512-token units are a
Mooncake trace's `hash_ids`. A unit stands for the cache blocks that end inside it —
`(k+1)·unit // block − k·unit // block` blocks for unit k, 32 for a 512-token unit over 16-token
blocks — as if each had the id (unit hash, index). The cache keeps one entry per unit, so it costs one
dict operation per unit however many blocks the unit spans, and it evicts whole units (the blocks of
a unit are freed together, so vLLM would evict them together too).

The cached units of any chain form a prefix of it: a sequence holds a prefix of its chain, and
releases it tail first (vLLM frees a request's blocks in reverse order), so a chain's earlier units
are always at least as recently used as its later ones and eviction takes chains from their end.
`match` relies on it to find the longest cached prefix by bisection.

Sequences without prefix information only add and subtract block counts: no dict, no LRU. Uncached
free blocks are used before any cached block is evicted (vLLM's single free queue can evict a cached
block while uncached ones sit behind it; this keeps slightly more reuse).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Hashable, Sequence
from itertools import compress, repeat
from operator import not_

# A unit's hash: an int for the chain hashes the drivers make; kept open (any hashable, as tests use) so
# the compiled build (`make native`) accepts what the interpreted one does.
UnitHash = Hashable

_plus_one = (1).__add__
_minus_one = (-1).__add__


class KvCache:
    """Block accounting and the prefix index of one replica. All counts are blocks."""

    __slots__ = ("capacity_blocks", "block_tokens", "held_blocks", "cached_blocks", "_refs", "_lru")

    def __init__(self, capacity_blocks: int, block_tokens: int) -> None:
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.held_blocks = 0  # held by live sequences (a shared block once): vLLM's used blocks
        self.cached_blocks = 0  # computed, held by no sequence, kept for reuse until evicted
        self._refs: dict[UnitHash, int] = {}  # unit hash → live sequences holding it (0: evictable, in _lru)
        self._lru: OrderedDict[UnitHash, int] = OrderedDict()  # evictable unit hash → its blocks, oldest first

    def unit_blocks(self, k: int, unit_tokens: int) -> int:
        """Cache blocks whose end falls in hash unit k (a unit of `unit_tokens` tokens)."""
        b = self.block_tokens
        return (k + 1) * unit_tokens // b - k * unit_tokens // b

    def units_blocks(self, n_units: int, unit_tokens: int) -> int:
        """Cache blocks covered by the first `n_units` hash units."""
        return n_units * unit_tokens // self.block_tokens

    # --- sequences without prefix information --------------------------------------------------

    def reserve(self, blocks: int) -> None:
        """A sequence takes `blocks` new blocks (the caller checked `held_blocks + blocks` fits)."""
        self.held_blocks += blocks
        if self.held_blocks + self.cached_blocks > self.capacity_blocks:
            self._evict()

    def free(self, blocks: int) -> None:
        self.held_blocks -= blocks

    # --- prefix reuse ---------------------------------------------------------------------------

    def match(self, hashes: Sequence[UnitHash], max_units: int) -> int:
        """How many leading units of `hashes` (at most `max_units`) are cached here: O(log n)."""
        refs = self._refs
        lo, hi = 0, max_units  # hashes[k] is cached for every k < lo and for none k ≥ hi
        while lo < hi:
            mid = (lo + hi) >> 1
            if hashes[mid] in refs:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def evictable_blocks(self, hashes: Sequence[UnitHash], n_units: int, unit_tokens: int) -> int:
        """Blocks among the first `n_units` (cached) units held by no sequence: holding them takes no
        free block but moves them into use, so a sequence fits when `held + new + these ≤ capacity`."""
        refs = self._refs
        blocks = 0
        for k in range(n_units):
            if refs.get(hashes[k]) == 0:
                blocks += self.unit_blocks(k, unit_tokens)
        return blocks

    def hold(self, hashes: Sequence[UnitHash], n_units: int, unit_tokens: int, total_blocks: int) -> int:
        """A sequence of `total_blocks` blocks takes the first `n_units` units (`match` found them
        cached) and new blocks for the rest; returns the units it holds (fewer only if `hashes` is not
        a chain and `match` was misled)."""
        refs = self._refs
        prefix = hashes[:n_units]
        if not all(map(refs.__contains__, prefix)):
            n_units = next(k for k, h in enumerate(prefix) if h not in refs)
            prefix = prefix[:n_units]
        # Per-unit work in C loops (map/zip/update): a conversation's prompt is hundreds of units.
        moved = sum(map(self._lru.pop, prefix, repeat(0)))  # the evictable ones come back into use
        refs.update(zip(prefix, map(_plus_one, map(refs.__getitem__, prefix)), strict=True))
        self.cached_blocks -= moved
        self.held_blocks += moved + total_blocks - self.units_blocks(n_units, unit_tokens)
        if self.held_blocks + self.cached_blocks > self.capacity_blocks:
            self._evict()
        return n_units

    def insert(self, hashes: Sequence[UnitHash], start: int, end: int, unit_tokens: int) -> None:
        """Units [start, end) of a sequence are computed: its own blocks become cached units it holds.

        A unit another sequence computed meanwhile is shared instead, and this sequence's copy freed
        (vLLM keeps the duplicate until the sequence ends; the difference is a few blocks for a moment)."""
        refs = self._refs
        lru = self._lru
        for k in range(start, end):
            h = hashes[k]
            r = refs.get(h)
            if r is None:
                refs[h] = 1
                continue
            blocks = self.unit_blocks(k, unit_tokens)
            if r == 0:
                lru.pop(h)
                self.cached_blocks -= blocks
            else:
                self.held_blocks -= blocks
            refs[h] = r + 1

    def release(self, hashes: Sequence[UnitHash], n_units: int, unit_tokens: int, own_blocks: int) -> None:
        """A sequence ends: it drops its first `n_units` units (tail first) and frees `own_blocks`."""
        refs = self._refs
        prefix = hashes[:n_units]
        counts = list(map(_minus_one, map(refs.__getitem__, prefix)))
        refs.update(zip(prefix, counts, strict=True))
        idle = list(compress(prefix, map(not_, counts)))  # held by no sequence now: evictable
        idle.reverse()  # tail first, so a chain's beginning is evicted last
        if unit_tokens % self.block_tokens == 0:
            w = unit_tokens // self.block_tokens
            self._lru.update(zip(idle, repeat(w)))
            freed = w * len(idle)
        else:
            position = {h: k for k, h in enumerate(prefix)}
            freed = 0
            for h in idle:
                blocks = self.unit_blocks(position[h], unit_tokens)
                self._lru[h] = blocks
                freed += blocks
        self.held_blocks -= own_blocks + freed
        self.cached_blocks += freed

    def _evict(self) -> None:
        """Drop least recently used cached units until everything fits."""
        refs = self._refs
        lru = self._lru
        over = self.held_blocks + self.cached_blocks - self.capacity_blocks
        while over > 0 and lru:
            h, blocks = lru.popitem(last=False)
            del refs[h]
            self.cached_blocks -= blocks
            over -= blocks

    def __len__(self) -> int:
        """Units indexed (held or evictable)."""
        return len(self._refs)

    def cached_units(self, snapshot: bool = False) -> Container[UnitHash]:
        """The unit hashes cached here (held or evictable), for the zone's load report
        (`Zone.cached_units`): a live read-only view, or with `snapshot` a picklable copy as of now (a
        dict copy: ≈5 ns a unit, 10-15× cheaper than building a set of them)."""
        return self._refs.copy() if snapshot else self._refs.keys()
