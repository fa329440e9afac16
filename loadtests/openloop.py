"""Open loop for Locust: requests leave on a fixed Poisson schedule, whatever the answers do.

A Locust user is a closed loop: it sends, waits for the answer, (thinks,) sends again — so when the
grid slows down the users slow down with it and the offered load drops exactly when it matters (a
capacity test that throttles itself; "coordinated omission"). `OpenLoopUser` instead replays an
arrival schedule: the profile's Poisson arrivals (`shapes.arrivals_table`, the generator the
simulator uses, same seed), each sent in its own greenlet at its time. Late answers pile up as
requests in flight, as they would with real users, and the measured latencies include the queueing
that a closed loop hides. This is `vllm bench serve --request-rate` / GuideLLM `poisson` in Locust.

One generator per Locust process: with `--workers N` the master runs N generators (one per worker),
each replaying every N-th arrival (`shapes.slot_slice`), so together they send the whole schedule.
"""

from __future__ import annotations

import itertools
import logging
import math
import time

import gevent
from gevent.pool import Group
from locust import FastHttpUser, constant, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

from loadtests.chat import send_chat
from loadtests.shapes import arrivals_table, slot_slice

log = logging.getLogger(__name__)
_claims = itertools.count()


def generator_slot(runner) -> tuple[int, int]:
    """(this process's slot, number of slots): the worker index among the expected workers, or (0, 1)."""
    if isinstance(runner, WorkerRunner):
        slots = int(getattr(runner.environment.parsed_options, "expect_workers", 1) or 1)
        return max(0, runner.worker_index) % slots, slots
    return 0, 1


class OpenLoopUser(FastHttpUser):
    """Replays the profile's arrivals open loop (configured by the locustfile: see `configure`)."""

    abstract = True
    concurrency = 4096  # connections in the pool: one per request in flight
    connection_timeout = 30.0
    network_timeout = 300.0
    wait_time = constant(0)

    profile = None
    sizes = None
    model = ""
    seed = 0
    drain_s = 15.0
    record = None  # callable(t_s, outcome, late_s) or None
    headers: dict = {}  # population → request headers (loadtests.chat.request_headers); missing: the default

    @task
    def replay(self) -> None:
        if next(_claims) > 0:  # one generator per process: more would send the schedule twice
            log.warning("open loop: one generator per Locust process; this extra user stays idle")
            raise StopUser()
        slot, slots = generator_slot(self.environment.runner)
        table = slot_slice(arrivals_table(self.profile, self.sizes, self.seed), slot, slots)
        pops = self.profile.population_ids
        times = table.arrival_s.tolist()
        log.info("open loop: slot %d/%d replays %d arrivals", slot, slots, len(times))
        group = Group()
        t0 = time.perf_counter()
        late_max = 0.0
        for i, at_s in enumerate(times):
            delay = t0 + at_s - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            late = max(0.0, time.perf_counter() - t0 - at_s)
            late_max = max(late_max, late)
            group.spawn(
                self._one,
                at_s,
                late,
                pops[int(table.population[i])],
                int(table.prompt_tokens[i]),
                int(table.output_tokens[i]),
                self.seed * 1_000_003 + slot + slots * i,
            )
        group.join(timeout=self.drain_s)
        log.info("open loop: schedule sent (max send lateness %.0f ms); %d still in flight", late_max * 1e3, len(group))
        raise StopUser()

    def _one(self, at_s: float, late_s: float, population: str, prompt: int, output: int, seed: int) -> None:
        try:
            outcome = send_chat(self, population, prompt, output, self.model, seed, self.headers.get(population))
        except Exception as exc:  # never lose a request silently
            log.exception("open loop request failed: %r", exc)
            return
        if self.record is not None:
            self.record(at_s, outcome, late_s)


def configure(
    profile, sizes, model: str, seed: int, drain_s: float, record, headers: dict | None = None
) -> type[OpenLoopUser]:
    """A concrete open-loop user class for this run (`headers`: population → request headers)."""
    return type(
        "OpenLoopUser",
        (OpenLoopUser,),
        {
            "abstract": False,
            "profile": profile,
            "sizes": staticmethod(sizes),
            "model": model,
            "seed": seed,
            "drain_s": drain_s if math.isfinite(drain_s) else 15.0,
            "record": staticmethod(record) if record else None,
            "headers": dict(headers or {}),
            "__module__": __name__,
        },
    )
