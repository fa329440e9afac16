"""The load generator's schedules and prompts (no services): live requests share KV blocks exactly as
the simulator's do, and count exactly the drawn prompt tokens."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from grid.demand.plan import demand_plan
from grid.live.experiment import arrival_schedule
from grid.live.loadgen import LIVE_BLOCK_TOKENS, PromptBuilder, Schedule, prompt_token_ids, request_key
from grid.live.prefix_hashes import block_hashes
from grid.live.text import _WORDS, number_width, numbered_words
from grid.live.tokenizer import BPE_RANKS, CHAT_OVERHEAD_TOKENS, chat_prompt, encode
from grid.scenario import load_scenario

HERE = Path(__file__).resolve().parent


def gateway_blocks(ids: list[int]) -> tuple[int, ...]:
    """The chain hashes the gateway names a prompt's KV blocks by."""
    return block_hashes(ids) or ()


def common_prefix(a, b) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


@pytest.fixture(scope="module")
def sessions():
    scenario = load_scenario(str(HERE / "sessions.yaml"))
    return scenario, arrival_schedule(scenario, 20.0, 1.0, scenario.seed)


def test_session_schedule_is_the_simulators_draw(sessions):
    scenario, schedule = sessions
    chunks = list(demand_plan(scenario, 20.0, 1.0, scenario.seed).arrivals(np.random.default_rng(scenario.seed)))
    assert schedule.arrival_s == [t for c in chunks for t in c.arrival_s.tolist()]
    assert schedule.prompt_tokens == [n for c in chunks for n in c.prompt_tokens.tolist()]
    assert schedule.output_tokens == [n for c in chunks for n in c.output_tokens.tolist()]
    assert schedule.prefix_hashes == [h for c in chunks for h in c.prefix_hashes]
    assert schedule.population == [list(scenario.populations)[p] for c in chunks for p in c.population.tolist()]
    assert schedule.block_tokens == 16 and len(schedule) > 50


def test_session_prompts_share_blocks_exactly_as_their_hashes(sessions):
    """Every pair of requests: the gateway's 16-token chain hashes of the ids agree exactly as far as the
    simulator's hashes do (over the units a prompt holds in full), and each prompt counts its tokens."""
    _, schedule = sessions
    builder = PromptBuilder("m", schedule, seed=5)
    bodies = [builder.body(i, stream=True) for i in range(len(schedule))]
    assert builder.path() == "/v1/completions"
    blocks, units = [], []
    for i, body in enumerate(bodies):
        ids, n = body["prompt"], schedule.prompt_tokens[i]
        assert len(ids) == n and body["max_tokens"] == schedule.output_tokens[i] and body["ignore_eos"]
        assert min(ids) >= 0 and max(ids) < BPE_RANKS
        blocks.append(gateway_blocks(ids))
        units.append(schedule.prefix_hashes[i][: n // LIVE_BLOCK_TOKENS])
    shared = 0
    for i, j in itertools.combinations(range(len(schedule)), 2):
        expected = common_prefix(units[i], units[j])
        assert common_prefix(blocks[i], blocks[j]) == expected, (i, j)
        shared += expected > 0
    assert shared > len(schedule)  # sessions do share: system prompts, earlier turns


def test_larger_units_map_onto_gateway_blocks():
    a = prompt_token_ids((7, 8, 9), 32, 100, key=1)
    b = prompt_token_ids((7, 8, 10), 32, 90, key=2)
    assert len(a) == 100 and len(b) == 90
    assert a[:64] == b[:64] and a[64:80] != b[64:80]
    assert common_prefix(gateway_blocks(a), gateway_blocks(b)) == 4  # two 32-token units = four blocks


def test_missing_hashes_and_units_past_the_prompt():
    # No hashes: every token the request's own; hashes beyond the prompt (an answer's) are ignored.
    assert prompt_token_ids(None, 16, 40, key=1) != prompt_token_ids(None, 16, 40, key=2)
    assert len(prompt_token_ids((1, 2, 3, 4, 5), 16, 40, key=3)) == 40
    assert prompt_token_ids((1, 2), 16, 40, key=3)[:32] == prompt_token_ids((1, 2, 9), 16, 40, key=4)[:32]
    assert request_key(0, 1) != request_key(0, 2) != request_key(1, 1)


@pytest.mark.parametrize("unit", [0, 8, 24])
def test_units_that_are_not_whole_blocks_are_refused(unit):
    with pytest.raises(ValueError, match="16-token blocks"):
        Schedule([0.0], ["p"], [40], [4], [(1, 2)], unit)


def test_poisson_prompts_are_chat_prompts_apart_from_their_first_block():
    scenario = load_scenario(str(HERE / "fidelity.yaml"))
    schedule = arrival_schedule(scenario, 20.0, 1.0, scenario.seed)
    assert schedule.prefix_hashes is None and len(schedule) > 100
    builder = PromptBuilder("m", schedule, seed=3)
    assert builder.path() == "/v1/chat/completions"
    firsts = set()
    for i in range(len(schedule)):
        body = builder.body(i, stream=False)
        ids = encode(chat_prompt([("user", body["messages"][0]["content"])]))
        assert len(ids) == max(schedule.prompt_tokens[i], CHAT_OVERHEAD_TOKENS)
        if len(ids) >= LIVE_BLOCK_TOKENS:
            firsts.add(tuple(ids[:LIVE_BLOCK_TOKENS]))
    assert len(firsts) == sum(n >= LIVE_BLOCK_TOKENS for n in schedule.prompt_tokens)


def test_numbered_words_are_distinct():
    width = number_width(100_000)
    assert width == 3 and number_width(len(_WORDS)) == 1 and number_width(len(_WORDS) + 1) == 2
    spelled = {tuple(numbered_words(i, width)) for i in range(0, 100_000, 7)}
    assert len(spelled) == len(range(0, 100_000, 7))


def test_trace_scenarios_are_refused():
    with pytest.raises(ValueError, match="trace"):
        arrival_schedule(load_scenario("mooncake"), 10.0, 1.0, 0)
