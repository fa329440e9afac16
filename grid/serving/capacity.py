"""Closed-form capacity of a replica: what routers and planners use to reason about load."""

from __future__ import annotations

from grid.scenario import GpuProfile


def saturated_batch(profile: GpuProfile, mean_prompt: float, mean_output: float) -> int:
    """Sequences that fit at once: max_num_seqs, or fewer when the KV cache binds first."""
    by_kv = int(profile.kv_cache_tokens // max(1.0, mean_prompt + mean_output))
    return max(1, min(profile.max_num_seqs, by_kv))


def prefill_step_base_s(profile: GpuProfile) -> float:
    """Fixed step cost a prompt adds per `max_num_batched_tokens` of prefill. Chunked, prompts ride
    in steps that pay the decode base anyway (one base per forward pass, the larger): only the excess."""
    if profile.chunked_prefill:
        return max(0.0, profile.prefill_base_s - profile.decode_base_s)
    return profile.prefill_base_s


def replica_capacity_rps(profile: GpuProfile, mean_prompt: float, mean_output: float) -> float:
    """Requests per second one replica completes at saturation with requests of mean size.

    Per request: its share of the decode steps, (output − 1) · step(B) / B, plus its prefill time;
    the replica spends its time on the two (in separate steps or, chunked, in the same ones), so
    capacity is the inverse of their sum. Prefix-cache hits are not counted: the whole prompt.
    """
    batch = saturated_batch(profile, mean_prompt, mean_output)
    step_s = profile.decode_base_s + profile.decode_per_seq_s * batch
    decode_s = max(0.0, mean_output - 1.0) * step_s / batch
    prefill_s = (
        profile.prefill_per_token_s * mean_prompt
        + prefill_step_base_s(profile) * mean_prompt / profile.max_num_batched_tokens
    )
    per_request_s = decode_s + prefill_s
    return 1.0 / per_request_s if per_request_s > 0 else float("inf")
