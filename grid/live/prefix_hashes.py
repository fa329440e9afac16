"""A live prompt's KV-block hashes: what the zones' prefix caches see of real prompts.

vLLM's automatic prefix caching names each full block of `BLOCK_TOKENS` prompt tokens by a hash of
the block's token ids chained with its predecessor's hash, so a block's hash names the whole prefix up
to its end: two prompts share cached blocks exactly as far as their token ids agree, block by block.
The gateway hashes each prompt's ids (after Qwen3's chat template, `grid.live.tokenizer`) the same way
and hands the chain to the serving model as `Request.prefix_hashes`, as the simulator's session and
trace workloads do. Clients that share a system prompt or continue a conversation then hit the zone's
cache exactly where vLLM's would.

The hash is Python's tuple hash of (previous hash, the block's ids): ints hash the same in every
process (unlike str and bytes, salted per process), so a restarted gateway names the same blocks.
It costs ≈0.5 µs a block (≈1 ms at the 32,768-token context).
"""

from __future__ import annotations

from collections.abc import Sequence

BLOCK_TOKENS = 16  # vLLM's default block size


def block_hashes(ids: Sequence[int], block_tokens: int = BLOCK_TOKENS) -> tuple[int, ...] | None:
    """The chain hashes of the prompt's full blocks, in order; None when it has no full block."""
    full = len(ids) // block_tokens * block_tokens
    if not full:
        return None
    chain = []
    h = 0
    for start in range(0, full, block_tokens):
        h = hash((h, *ids[start : start + block_tokens]))
        chain.append(h)
    return tuple(chain)
