"""Session workloads: conversations and agents whose every turn resends the whole conversation.

A session belongs to one population and one application (`demand.sessions.apps`, chosen by share).
Turn k's prompt is the application's system prompt, every earlier message and answer, then message
k: so each turn extends the previous turn's prompt by its answer and a new message, and a prefix cache
can serve all of it but the new part. The next turn is sent a think time after this one (send to
send, as trace timestamps measure it: reading the answer and typing, or running a tool). The grid's
latency does not delay it: arrivals stay open-loop, as in every other demand model here. A session
ends after its drawn number of turns, or before a turn that would not fit the model's context (a
client starts a new chat there rather than sending what would be refused).

Prefix hashes name whole prefixes, as vLLM's chained block hashes do: two blocks share an id exactly
when everything up to their ends is the same. Content is identified, not generated. A block lying
wholly inside the system prompt has the application's content (the same in every session of that
app, or of that app and population with `system_prompt: per_population`), so its id chains from the
previous one with that content. Every later block's prefix is fixed by the session (its system
prompt and its own random key) and the block's position, so its id is a hash of those two: the same
as chaining, and computed for all of a session's blocks at once. Caches therefore see the reuse a
real workload has: the system prompt across sessions, the conversation so far across a session's turns.

Sessions start as a Poisson process per population at the demand model's request rate divided by
the mean turns per session, so `demand.rate_rps` keeps counting requests; sessions already under way
at time 0 are generated too (a warm-up before 0 whose turns are dropped), so the rate is steady from
the start. Everything is drawn from the run's generator: a seed replays the same sessions.

The published figures behind `regions/scenarios/sessions.yaml` are listed in regions/SOURCES.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from grid.demand.spec import Sessions, ThinkTime

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
STATS_SESSIONS = 4000  # sessions drawn (fixed seed) for the mean turns and sizes: within ~1-2%
MAX_WARMUP_S = 6 * 3600.0

Sampler = Callable[[np.random.Generator, int], np.ndarray]


def chain_hash(prev: int, key: int) -> int:
    """The id of a block whose predecessor has id `prev` and whose content is `key` (splitmix64's
    finalizer over both; 63 bits, so ids are non-negative ints as Mooncake's are)."""
    x = (prev * _GOLDEN + key + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return (x ^ (x >> 31)) >> 1


def think_sampler(think: ThinkTime) -> Callable[[np.random.Generator, int], np.ndarray]:
    median, sigma, floor = think.median_s, think.sigma, think.min_s
    return lambda rng, n: np.maximum(median * np.exp(sigma * rng.standard_normal(n)), floor)


@dataclass(frozen=True)
class SessionStats:
    """Per request (turn): mean turns per session, mean prompt and output tokens; p99 session length."""

    mean_turns: float
    mean_prompt_tokens: float
    mean_output_tokens: float
    p99_session_s: float


class SessionModel:
    """Draws sessions: their turns' send times, sizes and prefix hashes."""

    def __init__(self, spec: Sessions, n_populations: int, context_tokens: int) -> None:
        from grid.demand.arrivals import spec_sampler

        self.block = spec.block_tokens
        self.per_population = spec.system_prompt == "per_population"
        self.context_tokens = context_tokens
        self.n_populations = n_populations
        self.apps = list(spec.apps.values())
        shares = np.array([a.share for a in self.apps], dtype=float)
        self.app_shares = shares / shares.sum()
        self._turns = [spec_sampler(a.turns) for a in self.apps]
        self._first = [spec_sampler(a.first_message) if a.first_message else None for a in self.apps]
        self._message = [spec_sampler(a.message) for a in self.apps]
        self._attachment = [spec_sampler(a.attachment) if a.attachment else None for a in self.apps]
        self._answer = [spec_sampler(a.answer) for a in self.apps]
        self._think = [think_sampler(a.think) for a in self.apps]
        self._system_ids: dict[tuple[int, int], list[int]] = {}
        self._stats: SessionStats | None = None

    def system_ids(self, app: int, population: int) -> list[int]:
        """Ids of the blocks lying wholly inside an application's system prompt."""
        key = (app, population if self.per_population else -1)
        ids = self._system_ids.get(key)
        if ids is None:
            content = chain_hash(app + 1, key[1] + 2)  # the prompt's identity: the app (and population)
            ids, prev = [], content
            for _ in range(self.apps[app].system_prompt_tokens // self.block):
                prev = chain_hash(prev, content)
                ids.append(prev)
            self._system_ids[key] = ids
        return ids

    def draw(
        self,
        rng: np.random.Generator,
        starts: np.ndarray,
        populations: np.ndarray,
        lo_s: float = -math.inf,
        hi_s: float = math.inf,
    ) -> tuple:
        """Sessions starting at `starts` for `populations`: their turns sent in [lo_s, hi_s) as flat
        arrays (time, population, prompt, output) and a list of prefix-hash tuples, in no set order."""
        n = len(starts)
        apps = rng.choice(len(self.apps), size=n, p=self.app_shares)
        out_t, out_pop, out_prompt, out_output, out_hashes = [], [], [], [], []
        for a in range(len(self.apps)):
            mine = np.flatnonzero(apps == a)
            if len(mine):
                part = self._draw_app(rng, a, starts[mine], populations[mine], lo_s, hi_s)
                for store, values in zip((out_t, out_pop, out_prompt, out_output, out_hashes), part, strict=True):
                    store.append(values)
        if not out_t:
            empty = np.zeros(0)
            return empty, empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64), []
        return (
            np.concatenate(out_t),
            np.concatenate(out_pop),
            np.concatenate(out_prompt),
            np.concatenate(out_output),
            [h for part in out_hashes for h in part],
        )

    def _draw_app(self, rng: np.random.Generator, a: int, starts, pops, lo_s: float, hi_s: float) -> tuple:
        app, k = self.apps[a], len(starts)
        turns = np.maximum(self._turns[a](rng, k), 1)
        total = int(turns.sum())
        first = np.zeros(total, dtype=bool)
        first[np.concatenate(([0], np.cumsum(turns)[:-1]))] = True
        message = self._message[a](rng, total)
        if self._first[a] is not None:
            message[first] = self._first[a](rng, k)
        if app.attachment_share > 0:
            attached = rng.random(total) < app.attachment_share
            if self._first[a] is not None:
                attached &= ~first  # the first message has its own size spec
            message[attached] = self._attachment[a](rng, int(attached.sum()))
        answer = self._answer[a](rng, total)
        gaps = self._think[a](rng, total)
        salts = rng.integers(1, 1 << 62, size=k)
        # Per session: prompt_j = system + Σ_{i<j}(message_i + answer_i) + message_j; sent at the start
        # plus the think times before it. Segment-wise cumulative sums over the flat turn arrays.
        session = np.repeat(np.arange(k), turns)
        base = np.concatenate(([0], np.cumsum(turns)[:-1]))
        grown = np.cumsum(message + answer)
        before = np.concatenate(([0], grown))[base][session]  # what earlier sessions' turns added
        prompt = app.system_prompt_tokens + grown - answer - before
        gaps[first] = 0.0
        clock = np.cumsum(gaps)
        times = starts[session] + clock - np.concatenate(([0.0], clock))[base][session]
        fits = prompt + answer <= self.context_tokens
        # A session ends before its first turn that does not fit (sizes only grow within a session).
        keep = np.flatnonzero(_segment_prefix(fits, base, turns) & (times >= lo_s) & (times < hi_s))
        blocks = prompt // self.block
        top = np.zeros(k, dtype=np.int64)  # each session's longest kept prompt, in blocks
        np.maximum.at(top, session[keep], blocks[keep])
        hashes = self._hashes(a, pops, salts, session, blocks, keep, top)
        return times[keep], pops[session][keep], prompt[keep], answer[keep], hashes

    def _hashes(self, a: int, pops, salts, session, blocks, keep, top) -> list[tuple[int, ...]]:
        """Prefix hashes of the kept turns (in `keep`'s order). A session's block ids are made once,
        as Python ints its turns' tuples share."""
        out: list[tuple[int, ...]] = []
        current, ids = -1, []
        for j in keep.tolist():
            s = int(session[j])
            if s != current:
                current = s
                system = self.system_ids(a, int(pops[s]))
                anchor = system[-1] if system else chain_hash(a + 1, 1)
                salt = chain_hash(anchor, int(salts[s]))
                ids = system + _position_ids(salt, len(system), int(top[s])).tolist()
            out.append(tuple(ids[: int(blocks[j])]))
        return out

    def stats(self) -> SessionStats:
        """Mean turns and per-request sizes from a fixed-seed sample (the run's generator is untouched)."""
        if self._stats is None:
            rng = np.random.default_rng(20_26)
            starts = np.zeros(STATS_SESSIONS)
            pops = np.zeros(STATS_SESSIONS, dtype=np.int64)
            times, _, prompt, output, _ = self.draw(rng, starts, pops)
            n = max(len(times), 1)
            self._stats = SessionStats(
                mean_turns=max(len(times) / STATS_SESSIONS, 1e-9),
                mean_prompt_tokens=float(prompt.sum()) / n,
                mean_output_tokens=float(output.sum()) / n,
                p99_session_s=float(np.percentile(times, 99)) if len(times) else 0.0,
            )
        return self._stats


def _position_ids(salt: int, lo: int, hi: int) -> np.ndarray:
    """Ids of a session's blocks lo..hi-1: splitmix64 of (session, position), vectorized (63 bits)."""
    x = np.arange(lo, max(lo, hi), dtype=np.uint64) * np.uint64(_GOLDEN) + np.uint64(salt)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x >> np.uint64(1)


def _segment_prefix(ok: np.ndarray, base: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """Within each segment (a session's turns), True up to the first False and False from there."""
    bad = (~ok).astype(np.int64)
    seen = np.cumsum(bad)
    before = np.concatenate(([0], seen))[base]
    return (seen - np.repeat(before, turns)) == 0


def session_arrivals(demand, model: SessionModel, duration_s: float, rng: np.random.Generator) -> Iterator:
    """Turns of sessions as time-sorted ArrivalChunks over [0, duration_s), one per demand window."""
    from grid.demand.arrivals import WINDOW_S, PrefixedChunk

    stats = model.stats()
    warmup = min(stats.p99_session_s, MAX_WARMUP_S)
    edges = demand.window_edges(duration_s)
    if warmup > 0:
        edges = np.concatenate((-np.arange(math.ceil(warmup / WINDOW_S), 0, -1) * WINDOW_S, edges))
    pending_t = np.zeros(0)
    pending = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    pending_h: list = []
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        rates = demand.rates_rps(0.5 * (start + end)) / stats.mean_turns
        counts = rng.poisson(rates * (end - start))
        total = int(counts.sum())
        if total:
            starts = start + rng.random(total) * (end - start)
            pops = np.repeat(np.arange(len(rates)), counts)
            # Turns before 0 (the warm-up's) and after the run are never sent, so never hashed.
            t, p, prompt, output, hashes = model.draw(rng, starts, pops, 0.0, duration_s)
            pending_t = np.concatenate((pending_t, t))
            fresh = (p, prompt, output)
            pending = tuple(np.concatenate((old, new)) for old, new in zip(pending, fresh, strict=True))
            pending_h += hashes
        due = pending_t < end
        if not due.any():
            continue
        order = np.argsort(pending_t, kind="stable")
        pending_t = pending_t[order]
        pending = tuple(x[order] for x in pending)
        pending_h = [pending_h[i] for i in order]
        n = int(np.searchsorted(pending_t, end, side="left"))
        pop, prompt, output = (x[:n] for x in pending)
        yield PrefixedChunk(pending_t[:n], pop, prompt, output, pending_h[:n], model.block)
        pending_t, pending, pending_h = pending_t[n:], tuple(x[n:] for x in pending), pending_h[n:]
