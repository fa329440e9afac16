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
from grid.live.zone_actor import UPDATE_DONE, UPDATE_FAILED
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
        kind, _, t_s, first_s = item
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
    gateway.finished(live, ttft, e2e)
    use = api.usage(request.prompt_tokens, request.output_tokens)
    text = "".join(generate_pieces(request.output_tokens, text_seed))
    build = api.chat_completion if chat else api.text_completion
    payload = build(response_id, created, gateway.model_name, text, request.finish_reason, use)
    return JSONResponse(payload, headers=headers)


async def stream(gateway: GridGateway, live: _Live, writer: api.ChunkWriter, text_seed: int, half: float, first):
    """The answer as server-sent events, each piece when it reaches the client."""
    request = live.request
    pieces = generate_pieces(request.output_tokens, text_seed)
    queue = live.queue
    now = gateway.now
    sent = 0
    first_s = math.nan
    shift = half - gateway.monitor.clock_offset_s[request.zone]
    item = first
    try:
        while True:
            if item is None:
                item = await queue.get()
            kind, tokens, t_s, _ = item
            item = None
            if kind == UPDATE_STOP:
                err = gateway.stop_error(live)
                yield writer.error(err)
                yield writer.DONE
                return
            delay = t_s + shift - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if kind == UPDATE_FAILED:
                zi = request.zone
                gateway.midstream_log.append((now(), zi))
                gateway.counts["midstream_failed"] += 1
                gateway.attempt_failed(live, zi, "error")
                gateway.close(live, ERROR)
                yield writer.error(
                    api.ApiError(
                        503,
                        f"Zone {gateway.world.zone_ids[zi]} failed while serving the request.",
                        type_="service_unavailable",
                        code="zone_failed",
                    )
                )
                yield writer.DONE
                return
            done = kind == UPDATE_DONE
            if done:
                tokens = request.output_tokens
            if tokens > sent or done:
                chunk = writer.content("".join(pieces[sent:tokens]), request.finish_reason if done else None, tokens)
                sent = tokens
                if first_s != first_s:  # NaN: this is the first token
                    first_s = now()
                yield chunk
            if done:
                end_s = now()
                gateway.finished(live, first_s - request.arrival_s, end_s - request.arrival_s)
                if writer.include_usage:
                    yield writer.usage(api.usage(request.prompt_tokens, request.output_tokens))
                yield writer.DONE
                return
    finally:
        if not live.closed:  # the client went away: free the zone
            gateway.abandon(live, ABORT)
