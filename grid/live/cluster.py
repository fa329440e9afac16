"""Starting and stopping the live grid's Ray side: `ray.init` and one zone actor per zone.

Locally (`ray_address=None`) a private Ray instance starts with the machine's CPUs and every actor
runs in it. On a cluster (`ray_address="auto"` or `HOST:6379`) each zone actor asks for a small share
of the custom resource `region_<region id>`, so Ray places it on a machine started with e.g.
`ray start --address=HEAD:6379 --resources='{"region_frankfurt": 1}'` (a share, so all zones of a
region fit on one such machine). A cluster that lacks a region's resource is an error that names it,
unless `require_region_resources=False`, which places those zones anywhere.

Zone actors are asynchronous and mostly wait, so they take `num_cpus=0` and a `max_concurrency`.
They restart when killed (`max_restarts=-1`, i.e. always; a live `zone_down` fault kills one): the
new process is an empty zone (see grid.live.zone_actor, "Restarts").

A private local instance listens on loopback only (issue #13, F7): its node IP is 127.0.0.1, and
every Ray server then binds 127.0.0.1 (GCS, raylet's node and object managers, each worker's core
worker, the dashboard agent's gRPC/HTTP/metrics ports, the runtime env agent, the autoscaler monitor's
and dashboard head's metrics ports), as on macOS and Windows, where that is Ray's default. Nothing on
another machine can reach it, nor join it. Connecting to a cluster leaves its binding alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import ray

from grid.errors import GridInputError
from grid.live.zone_actor import MAX_CONCURRENCY, ZoneActor, zone_actor_args
from grid.scenario import Scenario
from grid.world import World

REGION_RESOURCE_SHARE = 0.01  # per zone actor: up to 100 zones of a region on one machine
ZONE_MAX_RESTARTS = -1  # Ray restarts a killed zone actor every time

log = logging.getLogger(__name__)


def region_resource(region: str) -> str:
    return f"region_{region}"


@dataclass
class ZoneHandles:
    """The zone actors, in the world's zone order."""

    actors: list  # ray ActorHandle per zone
    zone_ids: list[str]
    regions: list[str]
    placed_by_region: bool


LOOPBACK_IP = "127.0.0.1"


@contextlib.contextmanager
def _loopback_node_ip_allowed():
    """Ray replaces a loopback `_node_ip_address` with the machine's outward IP unless its
    `ray_constants.ENABLE_RAY_CLUSTER` is off (services.resolve_ip_for_localhost, get_node_ip_address).
    That flag is the env var RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER read once, when Ray is imported (off by
    default on macOS and Windows), so it is switched off in the module for the time of `ray.init`
    only. Ray's own processes are then told their node IP on their command lines."""
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved is None:
            del ray_constants.ENABLE_RAY_CLUSTER
        else:
            ray_constants.ENABLE_RAY_CLUSTER = saved


def start_ray(ray_address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster (`auto`, `HOST:PORT`, or `RAY_ADDRESS` when `ray_address` is None) or
    start a private local instance bound to loopback."""
    if ray.is_initialized():
        return
    common = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    # Ray runs workers at nice 15 by default; zone actors keep the model's clock and must not lose
    # the CPU to the gateway and the load generator (a cluster sets this at `ray start`).
    os.environ.setdefault("RAY_worker_niceness", "0")
    if ray_address or os.environ.get("RAY_ADDRESS"):  # ray.init reads RAY_ADDRESS when given no address
        ray.init(address=ray_address, **common)
        return
    with _loopback_node_ip_allowed():
        ray.init(num_cpus=num_cpus, _node_ip_address=LOOPBACK_IP, **common)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK_IP:  # a Ray upgrade changed how the node IP is chosen
        log.warning(
            "the local Ray instance runs on node IP %s, not %s: it may listen beyond loopback", node_ip, LOOPBACK_IP
        )


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


def start_zone_actors(
    scenario: Scenario,
    world: World,
    stream_interval_s: float,
    use_region_resources: bool | None = None,
    require_region_resources: bool = True,
    name_prefix: str | None = None,
) -> ZoneHandles:
    """One actor per zone; waits until every actor is up. `use_region_resources=None`: only when
    the Ray cluster defines at least one `region_*` resource (a plain local instance does not)."""
    cluster = ray.cluster_resources()
    if use_region_resources is None:
        use_region_resources = any(key.startswith("region_") for key in cluster)
    remote_cls = ray.remote(ZoneActor)
    actors, regions = [], []
    for zone_id in world.zone_ids:
        spec = scenario.zones[zone_id]
        options: dict = {"num_cpus": 0, "max_concurrency": MAX_CONCURRENCY, "max_restarts": ZONE_MAX_RESTARTS}
        if name_prefix:
            options["name"] = f"{name_prefix}{zone_id}"
        if use_region_resources:
            key = region_resource(spec.region)
            if key in cluster:
                options["resources"] = {key: REGION_RESOURCE_SHARE}
            elif require_region_resources:
                raise GridInputError(
                    f"zone {zone_id}: the Ray cluster has no resource {key!r}; start a worker of that region "
                    f"with ray start --address=HEAD:6379 --resources='{{\"{key}\": 1}}' "
                    f"(cluster resources: {', '.join(sorted(k for k in cluster if k.startswith('region_'))) or 'none'})"
                )
            else:
                log.warning("zone %s: no %s resource in the cluster; placing it anywhere", zone_id, key)
        args, kwargs = zone_actor_args(scenario, zone_id, stream_interval_s)
        actor = remote_cls.options(**options).remote(*args, **kwargs)
        actors.append(actor)
        regions.append(spec.region)
    ray.get([a.start.remote() for a in actors], timeout=120)
    return ZoneHandles(actors, list(world.zone_ids), regions, bool(use_region_resources))


def stop_zone_actors(handles: ZoneHandles) -> None:
    for actor in handles.actors:
        with contextlib.suppress(Exception):  # already gone
            ray.kill(actor)
