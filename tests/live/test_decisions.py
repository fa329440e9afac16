"""Explained decisions live (issue 19): every answer names why it went where it went, and
/grid/decisions/{id} gives the candidates with the terms the policy scored."""

from __future__ import annotations

from grid.routing.explain import Explanation, Row, recompute


def test_answers_carry_their_decision_and_the_api_explains_it(live):
    body = {"model": live.model, "messages": [{"role": "user", "content": "Why here?"}], "max_tokens": 4}
    r = live.client.post("/v1/chat/completions", json=body, headers={"X-Grid-Population": "berlin"})
    assert r.status_code == 200, r.text
    request_id, zone = r.headers["x-grid-request-id"], r.headers["x-grid-zone"]
    rule, winner, reason = r.headers["x-grid-decision"].split("; ", 2)
    assert rule == "lowest_eligible" and winner == zone and "predicted TTFT" in reason
    d = live.client.get(f"/grid/decisions/{request_id}").json()
    assert d["winner"] == zone and d["population"] == "berlin" and d["policy"] == "latency_aware"
    assert {c["zone"] for c in d["candidates"]} == {"frankfurt-1", "frankfurt-2", "mexico-1"}
    for c in d["candidates"]:
        assert c["rtt_s"] > 0 and c["queue_s"] >= 0 and c["prefill_s"] > 0 and c["score"] > 0
    # the API's terms are enough to pick the winner again
    ids = [c["zone"] for c in d["candidates"]]
    rows = tuple(Row(i, {}, c["score"], c["eligible"]) for i, c in enumerate(d["candidates"]))
    assert ids[recompute(Explanation(d["policy"], d["rule"], rows, -1, ""))] == zone
    for missing in ("999999999", "not-a-number"):
        r = live.client.get(f"/grid/decisions/{missing}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "decision_not_found", r.text
