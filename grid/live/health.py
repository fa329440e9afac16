"""Zone health for the live router: active checks plus passive outlier ejection, with half-open recovery.

Pure state (no I/O, no clock: every call takes `now`), one `ZoneHealth` per zone; the gateway feeds it
and asks `eligible` before routing. Envoy's ideas, tuned for a 2-core loopback grid:

- **Active checks**: the gateway asks every zone for its load report every `check_interval_s`
  (0.1 s) with a timeout (`check_timeout_s`, not counting the gateway's own event-loop stalls:
  `grid.live.loop_lag`). `unhealthy_checks` consecutive timeouts make the zone *suspected*: it is
  ejected (no new requests) but what it holds keeps running, since a slow zone may still finish.
  It is *dead* — its in-flight requests fail — after `dead_checks` consecutive timeouts, or at once
  on an error that says the actor died, or on a report from a new incarnation of the actor (Ray
  restarted it: everything it held is gone).
- **Passive outlier ejection**: `consecutive_errors` request failures in a row (a zone that answers
  "down", fails admitted requests, or misses a deadline) eject the zone (Envoy's `consecutive_5xx`).
- **Ejection time** grows with repeated ejections: `base_ejection_s × 2^(n−1)`, capped at
  `max_ejection_s` (Envoy's `base_ejection_time` × ejection count).
- **Half-open**: once the ejection time has passed and an active check succeeds, the zone takes
  traffic again on probation; one failure ejects it again (longer), `half_open_successes` successful
  requests (or as many healthy checks while it gets no traffic) close it (healthy, count reset).

A zone is *eligible* for routing when it is reachable, its own report says it is up, and it is not
ejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HEALTHY, EJECTED, HALF_OPEN = "healthy", "ejected", "half_open"


@dataclass(frozen=True)
class HealthSettings:
    check_interval_s: float = 0.1  # an active check of every zone this often (the load view has its own period)
    check_timeout_s: float = 0.6  # an active check (load report) slower than this is a failed check
    unhealthy_checks: int = 2  # consecutive failed checks → suspected: no new requests (≈ 1.2 s)
    dead_checks: int = 8  # consecutive failed checks → dead: its in-flight requests fail (≈ 5 s)
    consecutive_errors: int = 5  # passive: request failures in a row → ejected (Envoy's default)
    base_ejection_s: float = 1.0
    max_ejection_s: float = 30.0
    half_open_successes: int = 3


class ZoneHealth:
    """One zone's health as the router sees it."""

    def __init__(self, settings: HealthSettings | None = None) -> None:
        self.settings = settings or HealthSettings()
        self.state = HEALTHY
        self.reachable = True
        self.reported_up = True
        self.incarnation: str | None = None
        self.ejected_until = -math.inf
        self.ejections = 0  # consecutive ejections (reset when a half-open zone closes)
        self.ejections_total = 0
        self.failed_checks = 0
        self.dead = False  # confirmed lost: what it held has been failed
        self.errors = 0  # consecutive request failures
        self.half_open_ok = 0
        self.last_reason = ""

    @property
    def eligible(self) -> bool:
        return self.reachable and self.reported_up and self.state != EJECTED

    # --- active checks -------------------------------------------------------------------------

    def check_ok(self, up: bool, incarnation: str, now: float) -> bool:
        """A load report arrived. Returns True when it came from a new incarnation (a restart:
        the caller must fail what the old one held)."""
        self.failed_checks = 0
        self.dead = False
        self.reachable = True
        self.reported_up = up
        restarted = self.incarnation is not None and incarnation != self.incarnation
        self.incarnation = incarnation
        if restarted:
            self.eject(now, "restarted")
        elif self.state == EJECTED and now >= self.ejected_until:
            self.state = HALF_OPEN
            self.half_open_ok = 0
        elif self.state == HALF_OPEN and up:
            self.half_open_ok += 1  # healthy checks also count, so an idle zone closes eventually
            if self.half_open_ok >= self.settings.half_open_successes * 10:
                self._close()
        return restarted

    def check_failed(self, now: float, timeout: bool) -> bool:
        """A check timed out (`timeout`: the zone may only be slow) or errored (its actor is gone).
        Returns True when the zone is now dead (the caller fails its in-flight requests); a timed-out
        zone is only suspected (ineligible) until `dead_checks` in a row."""
        if not timeout:
            return self.lost(now, "check error")
        self.failed_checks += 1
        if self.failed_checks >= self.settings.unhealthy_checks and self.reachable:
            self.reachable = False
            self.eject(now, "check timeout")
        if self.failed_checks >= self.settings.dead_checks and not self.dead:
            self.dead = True
            self.last_reason = "checks timed out"
            return True
        return False

    def lost(self, now: float, reason: str) -> bool:
        """The zone's actor is gone (an actor error, a dead update stream). Returns True if it was
        not already dead (its in-flight requests are to be failed)."""
        was_dead = self.dead
        self.reachable = False
        self.dead = True
        self.eject(now, reason)
        return not was_dead

    # --- passive ------------------------------------------------------------------------------

    def request_ok(self) -> None:
        self.errors = 0
        if self.state == HALF_OPEN:
            self.half_open_ok += 1
            if self.half_open_ok >= self.settings.half_open_successes:
                self._close()

    def request_failed(self, now: float, reason: str) -> bool:
        """A request failed at this zone; True when that ejected it."""
        self.errors += 1
        if self.state == HALF_OPEN or (self.state == HEALTHY and self.errors >= self.settings.consecutive_errors):
            self.eject(now, reason)
            return True
        return False

    # --- transitions --------------------------------------------------------------------------

    def eject(self, now: float, reason: str) -> None:
        s = self.settings
        if self.state != EJECTED:
            self.ejections += 1
            self.ejections_total += 1
        self.state = EJECTED
        self.errors = 0
        self.last_reason = reason
        self.ejected_until = now + min(s.max_ejection_s, s.base_ejection_s * 2 ** (self.ejections - 1))

    def _close(self) -> None:
        self.state = HEALTHY
        self.ejections = 0
        self.half_open_ok = 0

    def to_dict(self, now: float) -> dict:
        return {
            "state": self.state,
            "eligible": self.eligible,
            "reachable": self.reachable,
            "suspected": not self.reachable and not self.dead,
            "reported_up": self.reported_up,
            "ejections_total": self.ejections_total,
            "ejected_for_s": max(0.0, self.ejected_until - now) if self.state == EJECTED else 0.0,
            "last_reason": self.last_reason,
        }
