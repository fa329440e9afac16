"""How much of a workload's prompts one infinite prefix cache could serve: the bound on cache-aware routing.

A request's prefix hashes are chain hashes (a unit's hash names its whole prefix), so with one cache
that every request reached and that never evicted, a request hits the longest run of its leading units
that an earlier request brought in. No assignment of requests to zones, each with its own finite
cache, can serve more: this is the single-global-cache bound the issue-16 policies are measured
against. Units past the prompt (a session's answer, cached when it is generated) count as brought in;
as in the serving model, a hit covers at most the prompt's full units and never the last prompt token
(an engine computes it for its logits), in whole engine blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class GlobalCacheBound:
    """The bound, fed request by request in arrival order (`add`)."""

    def __init__(self, engine_block_tokens: int = 1) -> None:
        self.engine_block_tokens = engine_block_tokens  # a hit is whole blocks of the engine's KV cache
        self.hit_tokens = 0
        self.prompt_tokens = 0
        self._seen: set[int] = set()

    def add(self, prompt_tokens: int, hashes: Sequence[int] | None, unit_tokens: int) -> int:
        """One more request; returns the prompt tokens the infinite cache serves it."""
        self.prompt_tokens += prompt_tokens
        if not hashes or unit_tokens <= 0:
            return 0
        seen = self._seen
        limit = min(len(hashes), prompt_tokens // unit_tokens)
        k = 0
        while k < limit and hashes[k] in seen:
            k += 1
        seen.update(hashes)
        block = self.engine_block_tokens
        hit = min(k * unit_tokens, max(0, prompt_tokens - 1) // block * block)
        self.hit_tokens += hit
        return hit

    @property
    def hit_rate(self) -> float:
        """Share of prompt tokens served from the one infinite cache (0 with no prompt tokens)."""
        return self.hit_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def reuse_bound(
    rows: Iterable[tuple[int, Sequence[int] | None]], unit_tokens: int, engine_block_tokens: int = 1
) -> float:
    """The bound over `(prompt tokens, prefix hashes)` rows in arrival order, all units `unit_tokens` long."""
    bound = GlobalCacheBound(engine_block_tokens)
    for prompt_tokens, hashes in rows:
        bound.add(prompt_tokens, hashes, unit_tokens)
    return bound.hit_rate
