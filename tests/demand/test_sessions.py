"""Session workloads: determinism, the prefix-reuse structure, rates and the context limit."""

from collections import defaultdict

import numpy as np
import pytest

from grid.demand.plan import demand_plan, session_model
from grid.demand.sessions import chain_hash
from grid.errors import GridInputError
from grid.scenario import load_scenario

BLOCK = 16
SYSTEM = 100  # 6 full 16-token blocks


def app(**changes) -> dict:
    spec = {
        "share": 1.0,
        "system_prompt_tokens": SYSTEM,
        "turns": {"dist": "fixed", "mean": 4},
        "message": {"dist": "lognormal", "mu": 4.0, "sigma": 1.0, "min_tokens": 20, "max_tokens": 2000},
        "answer": {"dist": "lognormal", "mu": 5.0, "sigma": 0.8, "max_tokens": 1000},
        "think": {"median_s": 20, "sigma": 0.5, "min_s": 2},
    }
    return spec | changes


def scenario(apps: dict | None = None, rate: float = 20.0, **sessions):
    spec = {"block_tokens": BLOCK, "apps": apps or {"chat": app()}} | sessions
    return load_scenario("default", {"demand.sessions": spec, "demand.diurnal": None, "demand.rate_rps": rate})


def arrivals(s, duration_s: float = 600.0, seed: int = 0):
    chunks = list(demand_plan(s, duration_s).arrivals(np.random.default_rng(seed)))
    return (
        np.concatenate([c.arrival_s for c in chunks]),
        np.concatenate([c.population for c in chunks]),
        np.concatenate([c.prompt_tokens for c in chunks]),
        np.concatenate([c.output_tokens for c in chunks]),
        [h for c in chunks for h in c.prefix_hashes],
        {c.block_tokens for c in chunks},
    )


def test_same_seed_same_sessions_other_seed_others():
    s = scenario()
    a, b, c = arrivals(s, seed=3), arrivals(s, seed=3), arrivals(s, seed=4)
    for x, y in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y)
    assert a[4] == b[4] and a[5] == {BLOCK}
    assert len(a[0]) != len(c[0]) or not np.array_equal(a[0], c[0])


def test_each_turn_resends_the_conversation_and_only_the_system_prompt_is_shared():
    times, pops, prompt, output, hashes, _ = arrivals(scenario())
    assert np.all(np.diff(times) >= 0) and times.min() >= 0
    assert all(len(h) == p // BLOCK for h, p in zip(hashes, prompt.tolist(), strict=True))
    system = hashes[0][: SYSTEM // BLOCK]
    assert all(h[: SYSTEM // BLOCK] == system for h in hashes)  # one system prompt for the app
    sessions = defaultdict(list)  # the first block after the system prompt names the session
    for i, h in enumerate(hashes):
        sessions[h[SYSTEM // BLOCK]].append(i)
    assert len(sessions) > 100
    owner = {}
    for key, turns in sessions.items():
        assert len({int(pops[i]) for i in turns}) == 1  # a session stays in its population
        for prev, nxt in zip(turns, turns[1:], strict=False):
            assert times[nxt] - times[prev] >= 2.0  # the think time's floor
            assert hashes[nxt][: len(hashes[prev])] == hashes[prev]  # the prompt so far is a prefix …
            assert prompt[nxt] > prompt[prev] + output[prev]  # … grown by the answer and a new message
        for i in turns:
            for block in hashes[i][SYSTEM // BLOCK :]:
                assert owner.setdefault(block, key) == key  # no block id outside the system prompt is shared


def test_system_prompt_per_population():
    _, pops, _, _, hashes, _ = arrivals(scenario(system_prompt="per_population"), duration_s=300)
    system = {}
    for p, h in zip(pops.tolist(), hashes, strict=True):
        assert system.setdefault(p, h[: SYSTEM // BLOCK]) == h[: SYSTEM // BLOCK]
    assert len(set(system.values())) == len(system) > 5


def test_request_rate_is_steady_from_the_start():
    # demand.rate_rps counts requests: sessions start at rate / mean turns, already under way at 0.
    times, *_ = arrivals(scenario(rate=30.0), duration_s=1200.0)
    assert len(times) / 1200.0 == pytest.approx(30.0, rel=0.06)
    first, last = np.sum(times < 200), np.sum(times >= 1000)
    assert first == pytest.approx(last, rel=0.2)


def test_sessions_end_before_a_turn_that_would_not_fit_the_context():
    s = load_scenario(
        "default",
        {
            "model.context_tokens": 3000,
            "demand.sessions": {"apps": {"chat": app(turns={"dist": "fixed", "mean": 30})}},
        },
    )
    model = session_model(s.demand.sessions, len(s.populations), 3000)
    times, _, prompt, output, _ = model.draw(np.random.default_rng(1), np.zeros(50), np.zeros(50, dtype=int))
    assert np.all(prompt + output <= 3000)
    assert model.stats().mean_turns < 30  # cut short, and the start rate knows it


def test_chain_hash_names_the_whole_prefix():
    a = chain_hash(chain_hash(0, 1), 2)
    assert a == chain_hash(chain_hash(0, 1), 2) and a != chain_hash(chain_hash(0, 3), 2)
    assert 0 <= a < 1 << 63


def test_apps_by_share_and_first_messages_and_attachments():
    apps = {
        "chat": app(share=3),
        "docs": app(
            share=1,
            system_prompt_tokens=32,
            first_message={"dist": "fixed", "mean": 5000},
            attachment_share=0.5,
            attachment={"dist": "fixed", "mean": 3000},
        ),
    }
    s = scenario(apps)
    model = session_model(s.demand.sessions, len(s.populations), s.model.context_tokens)
    _, _, prompt, _, hashes = model.draw(np.random.default_rng(2), np.zeros(400), np.zeros(400, dtype=int))
    docs = [p for p, h in zip(prompt.tolist(), hashes, strict=True) if h[:2] != hashes_of_chat(hashes)]
    assert min(docs) >= 32 + 5000  # every docs turn carries the first message
    assert 0.15 < len(docs) / len(prompt) < 0.35  # a quarter of the sessions, same turns


def hashes_of_chat(hashes):
    counts = defaultdict(int)
    for h in hashes:
        counts[h[:2]] += 1
    return max(counts, key=counts.get)


def test_sessions_are_validated():
    with pytest.raises(GridInputError, match="not both"):
        load_scenario("sessions", {"demand.trace": {"path": "x.jsonl"}})
    with pytest.raises(GridInputError, match="attachment"):
        scenario({"chat": app(attachment_share=0.2)})
    with pytest.raises(GridInputError, match="apps"):
        load_scenario("default", {"demand.sessions": {"apps": {}}})


def test_the_sessions_preset_is_sane():
    s = load_scenario("sessions")
    plan = demand_plan(s, 60.0)
    stats = session_model(s.demand.sessions, len(s.populations), s.model.context_tokens).stats()
    assert 2.0 < stats.mean_turns < 6.0
    assert plan.mean_tokens == (stats.mean_prompt_tokens, stats.mean_output_tokens)
    assert plan.meta()["apps"] == ["chat", "documents", "agent"]


def test_preset_figures_recompute_from_the_shipped_mooncake_trace():
    """regions/SOURCES.md: the sessions preset's Mooncake figures, measured again from `hash_ids`."""
    from grid.demand.traces import TraceReader
    from grid.scenario import PRESETS_DIR

    (rows,) = TraceReader(PRESETS_DIR / "traces" / "mooncake_conversation_trace.jsonl.gz", block_tokens=512).chunks()
    t, prompt, output = rows.t_s, rows.prompt, rows.output
    ends, parent = {}, np.full(len(t), -1)
    for i, h in enumerate(rows.hashes):  # a prompt extending an earlier prompt's blocks is its next turn
        for k in range(len(h), 1, -1):
            if h[:k] in ends:
                parent[i] = ends[h[:k]]
                break
        ends[h] = i
    turn = parent >= 0
    gaps = t[turn] - t[parent[turn]]
    new = prompt[turn] - prompt[parent[turn]] - output[parent[turn]]
    first = prompt[~turn] - 768

    def fit(x):
        logs = np.log(x)
        return round(float(logs.mean()), 2), round(float(logs.std()), 2)

    apps = load_scenario("sessions").demand.sessions.apps
    chat, docs = apps["chat"], apps["documents"]
    assert fit(gaps[gaps > 0]) == (round(np.log(chat.think.median_s), 2), round(chat.think.sigma, 2))
    assert fit(new[(new > 0) & (new <= 512)]) == (round(chat.message.mu, 2), round(chat.message.sigma, 2))
    assert np.mean(new[new > 0] > 512) == pytest.approx(docs.attachment_share, abs=0.005)
    assert fit(new[new > 512]) == (round(docs.attachment.mu, 2), round(docs.attachment.sigma, 2))
    assert fit(first[first > 512]) == (round(docs.first_message.mu, 2), round(docs.first_message.sigma, 2))
    assert fit(output) == (round(docs.answer.mu, 2), round(docs.answer.sigma, 2))
