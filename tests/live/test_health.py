"""The router's zone-health state machine (pure: no Ray, no clock) and the retry budget."""

from __future__ import annotations

from grid.live.health import EJECTED, HALF_OPEN, HEALTHY, HealthSettings, ZoneHealth
from grid.serving.retry import RetryBudget


def test_consecutive_errors_eject_then_half_open_then_close():
    h = ZoneHealth(HealthSettings(consecutive_errors=3, base_ejection_s=1.0, half_open_successes=2))
    assert not h.request_failed(0.0, "error") and not h.request_failed(0.1, "error")
    h.request_ok()  # a success resets the run
    assert not h.request_failed(0.2, "error") and not h.request_failed(0.3, "error")
    assert h.request_failed(0.4, "error") and h.state == EJECTED and not h.eligible
    h.check_ok(True, "a", 1.0)  # still inside the ejection time
    assert h.state == EJECTED
    h.check_ok(True, "a", 1.5)
    assert h.state == HALF_OPEN and h.eligible
    h.request_ok()
    h.request_ok()
    assert h.state == HEALTHY and h.ejections == 0


def test_half_open_failure_ejects_again_for_longer():
    h = ZoneHealth(HealthSettings(base_ejection_s=1.0, max_ejection_s=3.0))
    h.eject(0.0, "x")
    h.check_ok(True, "a", 1.0)
    assert h.state == HALF_OPEN
    assert h.request_failed(1.1, "error")  # one failure on probation is enough
    assert h.ejected_until == 1.1 + 2.0
    h.check_ok(True, "a", 3.2)
    h.request_failed(3.3, "error")
    assert h.ejected_until == 3.3 + 3.0  # capped at max_ejection_s


def test_check_timeouts_suspect_the_zone_then_confirm_it_dead_and_a_restart_ejects():
    h = ZoneHealth(HealthSettings(unhealthy_checks=2, dead_checks=4))
    h.check_ok(True, "first", 0.0)
    assert not h.check_failed(0.6, timeout=True) and h.eligible
    assert not h.check_failed(1.2, timeout=True)  # suspected: no new requests, what it holds runs on
    assert not h.eligible and not h.reachable and not h.dead and h.to_dict(1.2)["suspected"]
    assert not h.check_failed(1.8, timeout=True)
    assert h.check_failed(2.4, timeout=True) and h.dead  # dead: its requests fail, once
    assert not h.check_failed(3.0, timeout=True)
    assert h.check_ok(True, "second", 3.2)  # a new incarnation: what the old one held is gone
    assert h.state == EJECTED and h.reachable and not h.dead


def test_a_suspected_zone_that_answers_again_was_never_dead():
    h = ZoneHealth(HealthSettings(unhealthy_checks=2, dead_checks=4))
    h.check_ok(True, "a", 0.0)
    h.check_failed(0.6, timeout=True)
    h.check_failed(1.2, timeout=True)
    assert not h.check_ok(True, "a", 1.5)  # same incarnation: nothing it held is lost
    assert h.reachable and not h.dead
    assert h.lost(2.0, "actor error") and h.dead  # an actor error is death at once
    assert not h.lost(2.1, "actor error")  # reported once


def test_actor_error_is_immediate_and_reported_down_is_not_an_outlier():
    h = ZoneHealth()
    assert h.check_failed(0.0, timeout=False) and not h.eligible
    g = ZoneHealth()
    g.check_ok(False, "a", 0.0)
    assert not g.eligible and g.state == HEALTHY  # down by its own report (a fault window)
    g.check_ok(True, "a", 0.1)
    assert g.eligible


def test_retry_budget_is_a_share_of_active_requests_with_a_floor():
    budget = RetryBudget(ratio=0.2, min_concurrency=3)
    assert budget.allows(0)
    budget.retrying = 3
    assert not budget.allows(10) and budget.allows(20)  # 20% of 20 = 4 > 3
