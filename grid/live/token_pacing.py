"""When each token of a stream is due: the gateway's side of the zone actor's token promises.

A zone actor sends, per streaming request, its first token's time (FIRST), then promises: "`n`
tokens by zone time `t`" at every stream tick, looking one tick ahead (`grid.live.zone_actor`,
"Streams are paced"), and finally DONE with the last token's true time. The pacer spaces the tokens
between the last one sent and the latest promise evenly, so the client sees one token per decode step
(vLLM's stream: one chunk per engine step) instead of a burst per tick, and the gaps it measures
are the gaps the gateway really left between chunks. It reads no clock: times are the zone's, and
the stream converts them to its own.
"""

from __future__ import annotations

import math


class TokenPacer:
    """The schedule of one stream's tokens (zone-clock seconds).

    `tokens_per_chunk` tokens go in one SSE chunk (1: vLLM's one token per chunk); a chunk is due
    when its last token is. The final chunk (the answer's last tokens, with its finish reason) is due
    at the finish, never before."""

    __slots__ = ("tokens_per_chunk", "sent", "sent_s", "target", "target_s", "first_s", "done")

    def __init__(self, tokens_per_chunk: int = 1) -> None:
        if tokens_per_chunk < 1:
            raise ValueError("tokens_per_chunk must be ≥ 1")
        self.tokens_per_chunk = tokens_per_chunk
        self.sent = 0  # tokens already sent
        self.sent_s = math.nan  # when the last of them was due
        self.target = 0  # tokens promised (all of them once done)
        self.target_s = math.nan  # by when
        self.first_s = math.nan  # the first token's time
        self.done = False  # the answer is complete: `target` is its length

    def first(self, first_s: float) -> None:
        """The first token came at `first_s`."""
        self.first_s = first_s
        self.promise(1, first_s)

    def promise(self, tokens: int, by_s: float) -> None:
        """`tokens` tokens exist by `by_s` (a lower promise than before changes nothing: the stream waits)."""
        if tokens > self.target and not self.done:
            self.target, self.target_s = tokens, by_s

    def finish(self, tokens: int, finish_s: float, first_s: float) -> None:
        """The answer is complete: `tokens` in all, the last at `finish_s`."""
        if self.first_s != self.first_s:  # NaN: the first token came with the finish
            self.first_s = first_s
        self.target, self.target_s, self.done = tokens, finish_s, True

    def next_chunk(self) -> tuple[int, float] | None:
        """(tokens sent once the next chunk is, when it is due); None when nothing is promised yet."""
        sent, target = self.sent, self.target
        if sent >= target:
            return (target, self.target_s) if self.done and sent == 0 and target == 0 else None
        end = min(target, sent + self.tokens_per_chunk)
        if sent == 0:  # the first token is due at its own time, the rest spaced from there
            start_n, start_s = 1, self.first_s if self.first_s == self.first_s else self.target_s
            if end == 1:
                return end, start_s
        else:
            start_n, start_s = sent, self.sent_s
        if end == target or self.target_s <= start_s:
            return end, self.target_s
        return end, start_s + (end - start_n) * (self.target_s - start_s) / (target - start_n)

    def sent_chunk(self, tokens: int, due_s: float) -> None:
        """The chunk that ends with token `tokens` (due at `due_s`) has been sent."""
        self.sent, self.sent_s = tokens, due_s

    @property
    def complete(self) -> bool:
        return self.done and self.sent >= self.target and (self.target > 0 or self.sent_s == self.sent_s)
