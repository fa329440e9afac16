"""The response side of the gateway: a routed request's answer, streamed (SSE) or at once, and its end record.

Every piece of the answer reaches the client rtt/2 after the zone produced it (on the gateway's
clock, through the zone's clock offset), or at once when the update itself arrives later than that.
A non-streaming answer has sent nothing before it completes, so it is retried on another zone
whenever it fails; a stream that already sent tokens ends with an OpenAI `error` event and `[DONE]`.
The client-side figures (network included) feed `grid.stats.RunStats`, as the simulator does.

Metrics hook: `RequestRecord` is what the app's `on_request_end` callbacks get when a request ends
(metric families, the dashboard). Prompts are never logged or exported: records carry ids and counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse

from grid.live import openai_api as api
from grid.live.text import generate_pieces
from grid.live.token_pacing import TokenPacer
from grid.live.zone_actor import UPDATE_DONE, UPDATE_FAILED, UPDATE_FIRST
from grid.routing.view import GridView
from grid.serving.request import ERROR, REJECTED
from grid.serving.request import Request as GridRequest
from grid.world import World

if TYPE_CHECKING:
    from grid.live.gateway import GridGateway, _Live

ABORT = "abort"  # request status: the client went away (or nobody served it)
UPDATE_STOP = -1  # queue marker: the request must end now (its deadline passed, or the gateway drains)

log = logging.getLogger(__name__)


@dataclass
class RequestRecord:
    """One ended request, as the `on_request_end` callbacks see it (times in s; NaN if none)."""

    request_id: int
    population: str
    zone: str | None
    region: str | None
    status: str  # stop | length | rejected | error | abort
    prompt_tokens: int
    output_tokens: int
    rtt_s: float
    cached_tokens: int = 0  # prompt tokens served from the zone's prefix cache
    ttft_s: float = math.nan
    e2e_s: float = math.nan
    tpot_s: float = math.nan


def notify_end(
    callbacks: list[Callable[[RequestRecord], None]],
    world: World,
    request: GridRequest,
    status: str,
    times: tuple[float, float, float] | None,
) -> None:
    """Call every `on_request_end` callback with the ended request's record."""
    zi = request.zone
    record = RequestRecord(
        request_id=request.id,
        population=world.population_ids[request.population],
        zone=world.zone_ids[zi] if zi >= 0 else None,
        region=world.region_ids[world.zone_region[zi]] if zi >= 0 else None,
        status=status,
        prompt_tokens=request.prompt_tokens,
        output_tokens=request.output_tokens if times else 0,
        rtt_s=request.rtt_s,
        cached_tokens=request.cached_tokens,
    )
    if times:
        record.ttft_s, record.e2e_s, record.tpot_s = times
    for callback in callbacks:
        try:
            callback(record)
        except Exception:  # a metrics bug must not fail requests
            log.exception("on_request_end callback failed")


def give_up_error(world: World, view: GridView, live: _Live, retry_after: float) -> tuple[str, api.ApiError]:
    """No (more) zone to try: how the request ends (rejected or error) and what the client is told."""
    request = live.request
    pop_id = world.population_ids[request.population]
    attempts = live.attempts
    if not attempts.zones:
        return REJECTED, api.ApiError(
            503,
            f"No zone is reachable from population {pop_id!r} right now.",
            type_="service_unavailable",
            code="no_zone_available",
            retry_after_s=retry_after,
            headers={"x-grid-population": pop_id},
        )
    zone_id = world.zone_ids[attempts.last_zone]
    headers = {"x-grid-population": pop_id, "x-grid-zone": zone_id, "x-grid-attempts": str(request.attempts)}
    tried = ", ".join(world.zone_ids[z] for z in attempts.zones)
    if attempts.reason == "busy":
        return REJECTED, api.ApiError(
            429,
            f"Every zone tried is overloaded (queue full: {tried}); retry later.",
            type_="rate_limit_error",
            code="overloaded",
            retry_after_s=retry_after,
            headers=headers,
        )
    if attempts.reason == "down":
        message, code = f"Zone {zone_id} is down (tried {tried}).", "zone_down"
    elif attempts.reason == "timeout":
        message, code = f"Zone {zone_id} did not answer (tried {tried}).", "zone_unreachable"
    elif not math.isfinite(view.rtt_s[request.population][attempts.last_zone]):
        message, code = f"Zone {zone_id} is unreachable from population {pop_id!r}.", "zone_unreachable"
    else:
        message, code = f"Zone {zone_id} failed while serving the request (tried {tried}).", "zone_failed"
    return ERROR, api.ApiError(
        503, message, type_="service_unavailable", code=code, retry_after_s=retry_after, headers=headers
    )


async def until_made(now: Callable[[], float], queue: asyncio.Queue, first: tuple, offset_s: float) -> tuple:
    """Hold a first token the zone sent ahead (`grid.live.zone_actor`, "Early first tokens") until
    the zone makes it (`offset_s`: zone clock → gateway clock), as if it had come then: a failure or
    a stop that comes meanwhile is what the attempt returns, at once (retried: nothing was made),
    and a hedge race orders its copies by it, as the simulator does."""
    due = first[2] + offset_s
    held = []
    while (delay := due - now()) > 0:
        try:
            item = await asyncio.wait_for(queue.get(), delay)
        except TimeoutError:
            break
        if item[0] in (UPDATE_FAILED, UPDATE_STOP):
            return item
        held.append(item)
    if held:  # back in front of anything newer, in order, for the stream
        held += [queue.get_nowait() for _ in range(queue.qsize())]
        for item in held:
            queue.put_nowait(item)
    return first


async def final_update(queue: asyncio.Queue) -> tuple:
    """The last update of a non-streaming request (done, failed, or its deadline)."""
    while True:
        item = await queue.get()
        if item[0] in (UPDATE_DONE, UPDATE_FAILED, UPDATE_STOP):
            return item


async def complete(
    gateway: GridGateway,
    live: _Live,
    chat: bool,
    response_id: str,
    created: int,
    text_seed: int,
    half: float,
    headers,
):
    """The whole answer once the zone has finished it (retried elsewhere while it fails)."""
    request = live.request
    while True:
        item = await final_update(live.queue)
        kind, _, t_s, first_s, phases = item
        if kind == UPDATE_STOP:
            return gateway.stop_error(live).response()
        if kind != UPDATE_FAILED:
            break
        # Nothing has reached the client: try another zone.
        live.admitted = False
        gateway.attempt_failed(live, request.zone, "error")
        _, headers, half, _ = await gateway.attempt(live, stream=False)
    shift = half - gateway.monitor.clock_offset_s[request.zone]  # zone clock → the client's receipt, gateway clock
    delay = t_s + shift - gateway.now()
    if delay > 0:
        await asyncio.sleep(delay)
    e2e = gateway.now() - request.arrival_s
    ttft = e2e - (t_s - first_s)  # the first token left the zone t_s − first_s before the last one
    gateway.finished(live, ttft, e2e, None, phases)
    headers["x-grid-cached-tokens"] = str(request.cached_tokens)
    use = api.usage(request.prompt_tokens, request.output_tokens, request.cached_tokens)
    text = "".join(generate_pieces(request.output_tokens, text_seed))
    build = api.chat_completion if chat else api.text_completion
    payload = build(response_id, created, gateway.model_name, text, request.finish_reason, use)
    return JSONResponse(payload, headers=headers)


async def stream(gateway: GridGateway, live: _Live, writer: api.ChunkWriter, text_seed: int, half: float, first):
    """The answer as server-sent events, each chunk when it reaches the client: paced token by token
    from the zone's promises (`grid.live.token_pacing`); chunks already due go out in one write."""
    request = live.request
    pieces = generate_pieces(request.output_tokens, text_seed)
    queue = live.queue
    now = gateway.now
    pacer = TokenPacer(gateway.settings.stream_chunk_tokens)
    shift = half - gateway.monitor.clock_offset_s[request.zone]  # zone clock → the client's receipt
    first_sent = last_sent = math.nan
    gaps: list[float] = []  # between chunks as sent: vLLM's inter-token latency
    phases = None
    item = first
    try:
        while True:
            # Every update that is here first; wait for one only when no chunk is promised.
            while item is not None or not queue.empty() or (upcoming := pacer.next_chunk()) is None:
                if item is None:
                    item = queue.get_nowait() if not queue.empty() else await queue.get()
                kind, tokens, t_s, first_s, item_phases = item
                item = None
                if kind == UPDATE_STOP:
                    yield writer.error(gateway.stop_error(live))
                    yield writer.DONE
                    return
                if kind == UPDATE_FAILED:
                    delay = t_s + shift - now()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    yield writer.error(midstream_failure(gateway, live))
                    yield writer.DONE
                    return
                if kind == UPDATE_DONE:
                    pacer.finish(request.output_tokens, t_s, first_s)
                    phases = item_phases
                elif kind == UPDATE_FIRST:
                    pacer.first(t_s)
                    writer.cached_tokens = item_phases
                else:
                    pacer.promise(tokens, t_s)
            delay = upcoming[1] + shift - now()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # an update may have come meanwhile (a stop, a new promise): read it first
            out = []
            t = now()
            while upcoming is not None and upcoming[1] + shift <= t:
                tokens, due_s = upcoming
                last = pacer.done and tokens >= pacer.target
                text = "".join(pieces[pacer.sent : tokens])
                out.append(writer.content(text, request.finish_reason if last else None, tokens))
                pacer.sent_chunk(tokens, due_s)
                if first_sent != first_sent:  # NaN: this is the first chunk
                    first_sent = t
                else:
                    gaps.append(t - last_sent)
                last_sent = t
                if last:
                    break
                upcoming = pacer.next_chunk()
            yield b"".join(out) if len(out) > 1 else out[0]
            if pacer.complete:
                gateway.finished(live, first_sent - request.arrival_s, t - request.arrival_s, gaps, phases)
                if writer.include_usage:
                    yield writer.usage(api.usage(request.prompt_tokens, request.output_tokens, request.cached_tokens))
                yield writer.DONE
                return
    finally:
        if not live.closed:  # the client went away: free the zone
            gateway.abandon(live, ABORT)


def midstream_failure(gateway: GridGateway, live: _Live) -> api.ApiError:
    """A stream's zone failed after tokens reached the client: the request ends, as an error event."""
    zi = live.request.zone
    gateway.midstream_log.append((gateway.now(), zi))
    gateway.counts["midstream_failed"] += 1
    gateway.attempt_failed(live, zi, "error")
    gateway.close(live, ERROR)
    return api.ApiError(
        503,
        f"Zone {gateway.world.zone_ids[zi]} failed while serving the request.",
        type_="service_unavailable",
        code="zone_failed",
    )
