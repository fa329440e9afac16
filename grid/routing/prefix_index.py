"""The router's own record of which prompt prefixes it sent where: an approximate view of the zones' caches.

SGLang's cache-aware router keeps an approximate radix tree per worker of the prompts it sent there,
evicted LRU to a size bound, and needs no reports from the workers. With chain hashes (a block's hash
names its whole prefix: `Request.prefix_hashes`) the tree flattens into one LRU set of hashes per
zone: a prompt matches a zone for as many leading hash units as the zone's set holds. Each zone's set
is bounded by the prefix tokens its KV cache could keep (`capacity_tokens`), so what the router
believes expires about when the zone would have evicted it. It is approximate in the way SGLang's
is: it does not see evictions forced by other traffic's live sequences, nor a zone's restart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Sequence

from grid.serving.request import Request


class PrefixIndex:
    """Per zone, the hash units the router sent there (LRU, bounded in tokens)."""

    def __init__(self, capacity_tokens: Sequence[int]) -> None:
        self.capacity_tokens = list(capacity_tokens)
        self._units: list[OrderedDict[int, int]] = [OrderedDict() for _ in capacity_tokens]  # hash → tokens
        self._tokens = [0] * len(capacity_tokens)

    def hit_tokens(self, request: Request, zone: int) -> int:
        """Prompt tokens of `request` that `zone` is believed to hold (leading units), at most all but one
        (an engine always computes the last prompt token)."""
        hashes = request.prefix_hashes
        if not hashes:
            return 0
        unit_tokens = request.prefix_block_tokens
        units = self._units[zone]
        limit = min(len(hashes), (request.prompt_tokens - 1) // unit_tokens)
        # What a zone holds of a chain is a prefix of it (a chain's head is touched last when recorded,
        # so it is evicted last): the longest held prefix is a binary search.
        return held_units(hashes, limit, (units,)) * unit_tokens

    def record(self, request: Request, zone: int) -> None:
        """`request` was sent to `zone`: its prompt's units are (or will soon be) cached there."""
        hashes = request.prefix_hashes
        if not hashes:
            return
        unit_tokens = request.prefix_block_tokens
        units = self._units[zone]
        n = min(len(hashes), request.prompt_tokens // unit_tokens)
        added = 0
        for h in reversed(hashes[:n]):  # the head touched last: a chain's shared start expires last, as in vLLM
            if h in units:
                units.move_to_end(h)
            else:
                units[h] = unit_tokens
                added += unit_tokens
        if added:
            self._tokens[zone] += added
            capacity = self.capacity_tokens[zone]
            while self._tokens[zone] > capacity and units:
                self._tokens[zone] -= units.popitem(last=False)[1]

    def tokens(self, zone: int) -> int:
        """Prefix tokens the router believes `zone` holds (SGLang's "tree size")."""
        return self._tokens[zone]


def held_units(hashes: Sequence[int], limit: int, summary: Sequence[Container[int]]) -> int:
    """Leading units of `hashes` (at most `limit`) that a zone's cache summary holds: the longest over its
    containers. Each holds a prefix of every chain, so one bisection per container that holds the next
    unit after the longest found so far; the others cost one look-up."""
    held = 0
    for units in summary:
        if held < limit and hashes[held] in units:
            low, high = held + 1, limit  # units holds hashes[:low]; not hashes[high:]
            while low < high:
                mid = (low + high + 1) >> 1
                if hashes[mid - 1] in units:
                    low = mid
                else:
                    high = mid - 1
            held = low
    return held
