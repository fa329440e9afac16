"""The gateway's FastAPI app: OpenAI-compatible inference endpoints, health, metrics, dashboard, admin.

`create_app(scenario, zones, settings)` builds the app (no import-time globals) over a `GridGateway`.
The HTTP edge is bounded before the app runs (`grid.live.http_limits`: 431, 408, 413, 503).
Per request: check the API key and its rate limit when keys are configured (401 / 429), the body
size (413, `grid.live.security.BodyLimit`, a backstop for servers built without those limits), the
content type (415), validate the body (400 in OpenAI's shape), the model (404) and the
population (`grid.live.intake`: header, `MODEL@POPULATION`, `user`, the key's, the default), count
the prompt tokens (`grid.live.tokenizer`: Qwen's), then hand it to `GridGateway.handle`. Errors always come in
OpenAI's shape, never as a bare traceback page.

The app owns one `prometheus_client.CollectorRegistry` (`app.state.registry`, served at `/metrics`)
and a list of callbacks `app.state.on_request_end`, each called with a
`grid.live.responses.RequestRecord` when a request ends: metric families (vLLM's, the grid's) attach there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from grid.live import openai_api as api
from grid.live import tokenizer
from grid.live.admin import add_admin_routes
from grid.live.autoscaling import add_scaling_routes
from grid.live.cluster import ZoneHandles
from grid.live.dashboard import DashboardStats, world_json, zones_json
from grid.live.gateway import GatewaySettings, GridGateway, received_at
from grid.live.http_limits import RECEIVED_AT
from grid.live.security import BodyLimit, check_key_populations
from grid.scenario import Scenario
from grid.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from grid.telemetry.metrics import GridMetrics

log = logging.getLogger(__name__)


def _body_schemas() -> tuple[dict, dict, dict]:
    """OpenAPI request bodies of the two inference endpoints, and the component schemas they use."""
    components: dict = {}
    bodies = []
    for model in (api.ChatCompletionRequest, api.CompletionRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
        bodies.append(
            {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
            }
        )
    return bodies[0], bodies[1], components


_ERROR_RESPONSE = {
    "description": "An OpenAI-shaped error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


CLIENT_CLOSED = 499  # nginx's status for a request whose client hung up (never delivered: logs only)


async def unless_hung_up(request: Request, work: Awaitable[Response]) -> Response:
    """Await `work` (the request's handling) unless the client hangs up first: then it is cancelled,
    so the zone frees the request's slot and it ends once, as cancelled. A streamed answer watches
    its client itself once it starts (Starlette's StreamingResponse); this covers the wait before it
    and every non-streaming answer (F2: they used to run to the end and count as successes). One
    watcher task per request, which cancels this one (≈ 10 µs: a task for the work as well, and
    `asyncio.wait`, cost 30)."""
    task = asyncio.current_task()
    state = {"hung_up": False, "answered": False}

    def on_watcher_done(watcher: asyncio.Task) -> None:
        if state["answered"] or watcher.cancelled() or watcher.exception() is not None:
            return
        state["hung_up"] = True
        task.cancel()

    watcher = asyncio.ensure_future(_hang_up(request))
    watcher.add_done_callback(on_watcher_done)
    try:
        return await work
    except asyncio.CancelledError:
        if not state["hung_up"] or task.uncancel() > 0:  # cancelled for another reason too: go on
            raise
        log.info("client hung up before its answer; request cancelled")
        return Response(status_code=CLIENT_CLOSED)
    finally:
        state["answered"] = True
        watcher.cancel()


async def _hang_up(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(
    scenario: Scenario, zones: ZoneHandles, settings: GatewaySettings | None = None, registry=None
) -> FastAPI:
    """The gateway app over running zone actors (see grid.live.cluster.start_zone_actors)."""
    settings = settings or GatewaySettings()
    check_key_populations(settings.api_keys, scenario.populations)  # before any zone serves it
    gateway = GridGateway(scenario, zones, settings)
    registry = registry if registry is not None else CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Qwen's vocabulary loads once (≈0.3–0.7 s), off the event loop, before the first request needs it.
        await asyncio.to_thread(tokenizer.encoding)
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(title="inference grid gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    app.state.registry = registry
    app.state.on_request_end = gateway.on_request_end
    gateway.metrics = app.state.metrics = GridMetrics(
        registry, scenario, policy=gateway.policy.name, hedging=gateway.hedging is not None
    )
    gateway.loop_lag.register(registry)
    gateway.register_intake(registry)
    app.state.http_limits = settings.http_limits  # uvicorn_config reads it
    app.state.keep_alive_s = settings.keep_alive_s  # and this
    app.add_middleware(BodyLimit, max_bytes=settings.http_limits.max_body_bytes)

    @app.exception_handler(api.ApiError)
    async def _api_error(_request: Request, exc: api.ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        return api.validation_error(list(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return api.ApiError(exc.status_code, str(exc.detail), type_=kind).response()

    @app.exception_handler(ClientDisconnect)
    async def _client_disconnected(_request: Request, _exc: ClientDisconnect):  # expected: one line, no traceback
        log.info("client disconnected while sending its request")
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception):  # never a bare traceback page
        log.error("internal error: %s", type(exc).__name__)
        return api.ApiError(500, "Internal error.", type_="internal_error", code="internal_error").response()

    chat_body, completion_body, component_schemas = _body_schemas()
    population_param = {
        "name": "X-Grid-Population",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": list(gateway.world.population_ids)},
    }
    errors = {str(code): _ERROR_RESPONSE for code in (400, 401, 404, 408, 413, 415, 429, 431, 503, 504)}
    openapi_extra = {"parameters": [population_param]}

    def authorize(request: Request):
        return gateway.api_keys.check(request.headers, gateway.now())

    async def accept(request: Request, schema):
        """Key check, body, model and population: what every inference endpoint does first."""
        received_at.set(request.scope.get(RECEIVED_AT))  # where its TTFT starts (GridGateway.handle)
        key = authorize(request)
        api.check_content_type(request.headers)
        body = api.parse_body(schema, await request.body())
        key_population = key.population if key is not None else None
        population = gateway.intake.select_population(request.headers, body.model, body.user, key_population)
        return body, population

    @app.post(
        "/v1/chat/completions",
        openapi_extra={**openapi_extra, "requestBody": chat_body},
        responses={**errors, 200: {"description": "A chat completion, or its event stream"}},
    )
    async def chat_completions(request: Request):
        body, population = await accept(request, api.ChatCompletionRequest)
        messages = [(m.role, m.text()) for m in body.messages]
        ids = await tokenizer.chat_ids_async(messages, body.enable_thinking)
        return await unless_hung_up(request, gateway.handle(True, body, len(ids), population, ids))

    @app.post(
        "/v1/completions",
        openapi_extra={**openapi_extra, "requestBody": completion_body},
        responses={**errors, 200: {"description": "A text completion, or its event stream"}},
    )
    async def completions(request: Request):
        body, population = await accept(request, api.CompletionRequest)
        prompt = body.single_prompt  # token ids are the prompt's ids as they are
        ids = prompt if isinstance(prompt, list) else await tokenizer.prompt_ids_async(prompt)
        return await unless_hung_up(request, gateway.handle(False, body, max(1, len(ids)), population, ids))

    @app.get("/v1/models", responses={"401": _ERROR_RESPONSE})
    async def models(request: Request):
        authorize(request)
        card = {"object": "model", "created": gateway.created, "owned_by": "inference-grid"}
        data = [{"id": gateway.model_name, **card}]
        if settings.list_model_aliases:  # MODEL@POPULATION, for clients that only send listed models
            data += [{"id": alias, **card, "root": gateway.model_name} for alias in gateway.intake.model_aliases()]
        return {"object": "list", "data": data}

    @app.get("/health")
    async def health():
        up = sum(1 for zv in gateway.view.zones if zv.up)
        status = "draining" if gateway.draining else "ok" if up else "unavailable"
        body = {
            "status": status,
            "zones_up": up,
            "zones": len(gateway.view.zones),
            "loop_lag_ms": round(gateway.loop_lag.last_lag_s * 1000, 1),  # the gateway's own stall
        }
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    @app.get("/metrics")
    def metrics():  # a plain def: exposition runs in a worker thread, off the event loop
        return Response(gateway.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    dashboard = app.state.dashboard = DashboardStats(gateway.world)
    gateway.on_request_end.append(dashboard.observe)

    @app.get("/grid/zones")
    async def grid_zones():
        body = zones_json(gateway)
        for i, zone in enumerate(body["zones"]):
            zone.update(dashboard.zone_fields(i))
        body["flows"] = dashboard.flows()
        body["t_s"] = gateway.now()  # the gateway's clock, for rates between polls
        return body

    @app.get("/grid/decisions/{request_id}")
    async def grid_decision(request: Request):  # the id read by hand: a bad one is this 404, not a 422
        """Why request `request_id` (its answer's x-grid-request-id) went where it went, while recent."""
        request_id = request.path_params["request_id"]
        known = gateway.decisions is not None and request_id.isdigit()
        found = gateway.decisions.get(int(request_id)) if known else None
        if found is None:
            raise api.ApiError(404, f"No recent decision for request {request_id}.", code="decision_not_found")
        return found

    @app.get("/grid/world")
    async def grid_world():
        return world_json(scenario, gateway.world)

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page():
        page = resources.files("grid.live").joinpath("dashboard.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    if settings.admin_token:  # no token: the admin endpoints do not exist (404)
        add_admin_routes(app, gateway.faults, settings.admin_token)
        add_scaling_routes(app, gateway.fleet, settings.admin_token)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(component_schemas)
            schemas["ErrorBody"] = _ERROR_SCHEMA
            models = [gateway.model_name, *gateway.intake.model_aliases()]  # the one model, and its aliases
            for name in ("ChatCompletionRequest", "CompletionRequest"):
                schemas[name]["properties"]["model"] = {"type": "string", "enum": models}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
