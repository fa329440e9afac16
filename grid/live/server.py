"""Running the gateway: Ray + zone actors + uvicorn, in one object that starts and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from dataclasses import dataclass

import uvicorn

from grid.live.app import create_app
from grid.live.cluster import ZoneHandles, start_ray, start_zone_actors, stop_ray, stop_zone_actors
from grid.live.gateway import GatewaySettings
from grid.live.http_limits import HttpLimits, uvicorn_options
from grid.scenario import Scenario
from grid.world import build_world

DEFAULT_STREAM_INTERVAL_S = 0.02  # zone actors coalesce streamed tokens into chunks this often
GC_GEN0_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)


def freeze_heap() -> None:
    """Move everything alive after start-up (Ray, pydantic, FastAPI, the scenario) out
    of the cyclic garbage collector's reach (`gc.freeze`) and collect young objects less often.

    Profiled under benchmarks/gateway_overhead.py, CPython's collector took ≈25% of the gateway's
    CPU: every request allocates futures, tasks and dicts, and each older-generation collection
    walked the whole start-up heap. Reference counting frees almost everything a request allocates;
    the collector only has to find cycles, and after this it looks at objects created since. Full
    collections, rarer still, are made every `gateway_state.FULL_GC_EVERY_S` by the gateway itself."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run_async(main):
    """Run a coroutine on uvloop when it is installed (uvicorn[standard]), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class LiveGrid:
    """Zone actors on Ray and the gateway app over them (not yet serving)."""

    scenario: Scenario
    zones: ZoneHandles
    app: object
    owns_ray: bool

    @property
    def gateway(self):
        return self.app.state.gateway

    def close(self) -> None:
        stop_zone_actors(self.zones)
        if self.owns_ray:
            stop_ray()


def build_live_grid(
    scenario: Scenario,
    settings: GatewaySettings | None = None,
    ray_address: str | None = None,
    stream_interval_s: float = DEFAULT_STREAM_INTERVAL_S,
    num_cpus: int | None = None,
) -> LiveGrid:
    import ray

    owns_ray = not ray.is_initialized()
    start_ray(ray_address, num_cpus=num_cpus)
    try:
        zones = start_zone_actors(scenario, build_world(scenario), stream_interval_s)
    except BaseException:
        if owns_ray:
            stop_ray()
        raise
    grid = LiveGrid(scenario, zones, create_app(scenario, zones, settings), owns_ray)
    freeze_heap()
    return grid


GRACEFUL_SHUTDOWN_S = 10.0


def uvicorn_config(
    app, host: str, port: int, limits: HttpLimits | None = None, keep_alive_s: float | None = None
) -> uvicorn.Config:
    """The gateway's uvicorn settings, bounded at the edge (`grid.live.http_limits`) by `limits`, else
    the app's own (`app.state.http_limits`, when its settings give some), else the defaults. Build every
    server from it (`uvicorn_server`, or a `uvicorn.Server` subclass) so none goes unbounded.

    Idle kept-alive connections close after `keep_alive_s`, else the app's (`app.state.keep_alive_s`),
    else `GatewaySettings.keep_alive_s` (75 s: longer than client pools, see there), never uvicorn's 5 s."""
    state = getattr(app, "state", None)
    if limits is None:
        limits = getattr(state, "http_limits", None) or HttpLimits()
    if keep_alive_s is None:
        keep_alive_s = getattr(state, "keep_alive_s", None) or GatewaySettings.keep_alive_s
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,  # open streams must not hold a shutdown forever
        timeout_keep_alive=keep_alive_s,  # idle connections; closed at once on shutdown all the same
        **uvicorn_options(limits),
    )


def uvicorn_server(app, host: str, port: int, limits: HttpLimits | None = None) -> uvicorn.Server:
    """uvicorn turns SIGINT/SIGTERM into a graceful exit when it runs in the main thread."""
    return uvicorn.Server(uvicorn_config(app, host, port, limits))


async def wait_started(server: uvicorn.Server, task: asyncio.Task, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not server.started:
        if task.done():
            task.result()  # raises the startup error
            raise RuntimeError("the gateway stopped during startup")
        if loop.time() > deadline:
            raise TimeoutError("the gateway did not start")
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def serving(grid: LiveGrid, host: str = "127.0.0.1", port: int | None = None):
    """Serve a built grid with uvicorn in a thread (benchmarks, drills); yields the base URL and
    stops the server on exit (the grid itself stays up: close it yourself)."""
    import threading
    import time

    port = port or free_port(host)
    server = uvicorn_server(grid.app, host, port)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
