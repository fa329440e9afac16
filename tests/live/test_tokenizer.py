"""Qwen tokenization (grid.live.tokenizer): ids as Qwen's tokenizer gives them, Qwen3's chat template,
answers that re-tokenize to exactly their length, the fast path, and token-id prompts through the
real gateway (the last section runs on the `live` fixture)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from grid.live import openai_api as api
from grid.live import tokenizer
from grid.live.text import _SENTENCE_END, _WORDS, chat_content_for, filler_words, generate_pieces
from grid.live.tokenizer import CHAT_OVERHEAD_TOKENS, chat_prompt, count, count_chat, encode

from .test_gateway_e2e import assert_openai_error

SAMPLES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "café naïve résumé, e\u0301tude",
    "日本語のテキスト、そして中文。",
    "😀 emoji 🚀 and 12345 digits",
    "  leading   spaces\n\n\ttabs\r\n",
    "I'm sure we'll see; they've gone",
    "def f(a, b):\n    return a + b\n",
    "<|im_start|>user\nhi<|im_end|>\n",
    "",
]


# --- ids -----------------------------------------------------------------------------------------


def test_ids_match_dashscopes_own_qwen_tokenizer():
    """dashscope's QwenTokenizer (the vocabulary's publisher) encodes every sample to the same ids."""
    from dashscope import get_tokenizer

    reference = get_tokenizer("qwen-turbo")
    rng = random.Random(0)
    alphabet = "abcXYZ 0123\n\t.,;!?éü日本😀'\"-_()[]{}<|>"
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(300)]
    for text in SAMPLES + fuzz:
        assert encode(text) == reference.encode(text), text


def test_known_qwen_ids():
    assert encode("Hello world") == [9707, 1879]  # Qwen2/Qwen3's ids
    assert encode("12345") == [16, 17, 18, 19, 20]  # digits one by one
    # Qwen3's added tokens are split out of plain text, as Hugging Face's tokenizer (vLLM's) does;
    # Qwen1's <|extra_0|> is ordinary text to Qwen3.
    assert encode("<think>") == [151667] and encode("</think>") == [151668]
    assert len(encode("<|extra_0|>")) > 1
    assert encode("e\u0301") == encode("\u00e9")  # NFC, Qwen2/3's normalizer
    assert max(tokenizer.SPECIAL_IDS.values()) == 151668 < tokenizer.MODEL_VOCAB_SIZE


def test_count_is_the_length_of_encode_and_the_cache_keeps_it():
    text = "<|im_start|>system\n" + "A long system prompt, repeated by every request. " * 20 + "<|im_end|>"
    assert count(text) == len(encode(text)) == count(text)
    parts, todo = tokenizer._plan(text)
    assert todo == [] and list(tokenizer._join(parts)) == encode(text)  # the second time nothing is encoded
    assert list(tokenizer.prompt_ids(text)) == encode(text)


def test_a_whitespace_run_beyond_the_regex_limit_is_counted():
    """fancy-regex gives up past ~10⁶ characters of whitespace; such text is counted in pieces."""
    assert count(" " * 1_100_000 + "x") > 0


# --- the chat template -----------------------------------------------------------------------------


def test_the_chat_prompt_is_qwen3s():
    assert chat_prompt([("user", "Hello")]) == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    assert encode(chat_prompt([("user", "Hello")])) == [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]
    assert count_chat([("user", "")]) == CHAT_OVERHEAD_TOKENS
    assert chat_prompt([("system", "Be brief."), ("user", "Hi")]) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    # `developer` has no branch in Qwen3's template: it renders as nothing.
    assert chat_prompt([("developer", "x"), ("user", "Hi")]) == chat_prompt([("user", "Hi")])


def test_thinking_off_adds_the_empty_think_block():
    off = chat_prompt([("user", "Hi")], enable_thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert count_chat([("user", "Hi")], enable_thinking=False) == count_chat([("user", "Hi")]) + 4


def test_past_thinking_is_dropped_and_tool_results_fold_into_one_user_turn():
    said = "<think>\nplan it\n</think>\n\nThe answer."
    assert chat_prompt([("user", "a"), ("assistant", said), ("user", "b")]) == (
        "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nThe answer.<|im_end|>\n"
        "<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n"
    )
    # After the last user query, the last assistant turn keeps its thinking.
    assert chat_prompt([("user", "a"), ("assistant", said)]).startswith(
        "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n<think>\nplan it\n</think>\n\nThe answer.<|im_end|>\n"
    )
    assert chat_prompt([("user", "q"), ("assistant", ""), ("tool", "r1"), ("tool", "r2")]) == (
        "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>user"
        "\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_content_parts_join_with_a_line_break_as_vllm_joins_them():
    raw = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": t} for t in "ab"]}]}
    body = api.parse_body(api.ChatCompletionRequest, json.dumps(raw).encode())
    assert body.messages[0].text() == "a\nb" and body.enable_thinking
    raw["chat_template_kwargs"] = {"enable_thinking": False}
    assert not api.parse_body(api.ChatCompletionRequest, json.dumps(raw).encode()).enable_thinking


# --- synthetic text: every answer re-tokenizes to its length ---------------------------------------


def test_every_word_is_one_qwen_token_in_every_form_it_takes():
    for word in _WORDS:
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            assert len(encode(form)) == 1, form
    assert all(len(encode(mark)) == 1 for mark in _SENTENCE_END)


@pytest.mark.parametrize("seed", range(0, 200, 7))
def test_answers_retokenize_to_exactly_their_length(seed):
    pieces = generate_pieces(600, seed)
    for n in (1, 2, 9, 64, 255, 600):
        text = "".join(pieces[:n])
        assert count(text) == n
        assert encode(text) == [i for piece in pieces[:n] for i in encode(piece)]  # chunk boundaries too


def test_prompt_builders_are_exact():
    for n in (0, 1, 7, 100, 1000):
        assert count(filler_words(n, seed=n)) == n
    for tokens in (0, CHAT_OVERHEAD_TOKENS - 1, CHAT_OVERHEAD_TOKENS, 9, 150, 233, 2048):
        assert count_chat([("user", chat_content_for(tokens, seed=3))]) == max(tokens, CHAT_OVERHEAD_TOKENS)


# --- the fast path -------------------------------------------------------------------------------


def test_long_prompts_are_encoded_off_the_event_loop(monkeypatch):
    hops: list[int] = []
    to_thread = asyncio.to_thread

    async def counting_to_thread(fn, *args):
        hops.append(1)
        return await to_thread(fn, *args)

    monkeypatch.setattr(tokenizer.asyncio, "to_thread", counting_to_thread)
    tokenizer.encoding()
    short = "a short prompt, never seen before " + str(random.random())
    assert asyncio.run(tokenizer.count_async(short)) == count(short) and hops == []
    long = ("a long prompt " + str(random.random()) + " ") * (tokenizer.INLINE_MAX_CHARS // 10)
    assert asyncio.run(tokenizer.count_async(long)) == len(encode(long)) and len(hops) == 1
    assert asyncio.run(tokenizer.count_async(long)) == len(encode(long)) and len(hops) == 1  # cached: inline
    chat = [("system", long), ("user", "hi")]  # a new piece: "system\n" + long
    assert asyncio.run(tokenizer.count_chat_async(chat)) == len(encode(chat_prompt(chat))) and len(hops) == 2
    assert asyncio.run(tokenizer.count_chat_async(chat + [("user", "more")])) > 0 and len(hops) == 2


# --- through the real gateway ------------------------------------------------------------------------


def _complete(live, prompt, **extra):
    body = {"model": live.model, "prompt": prompt, "max_tokens": 2, **extra}
    return live.client.post("/v1/completions", json=body)


def test_token_id_prompts(live):
    for prompt, tokens in (([1, 2, 3], 3), ([[1, 2, 3]], 3), ([tokenizer.MODEL_VOCAB_SIZE - 1], 1)):
        r = _complete(live, prompt)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] == tokens
    assert assert_openai_error(_complete(live, [[1, 2], [3]]), 400)["param"] == "prompt"  # a batch of two
    assert assert_openai_error(_complete(live, [[]]), 400)["param"] == "prompt"
    assert assert_openai_error(_complete(live, [1, tokenizer.MODEL_VOCAB_SIZE]), 400)["param"] == "prompt.1"
    assert assert_openai_error(_complete(live, [[7, tokenizer.MODEL_VOCAB_SIZE]]), 400)["param"] == "prompt.0.1"


def test_text_prompts_count_qwen_tokens(live):
    for prompt in ("Once upon a time", "Grüße aus Bangkok 🚀", ["One prompt in a list"]):
        r = _complete(live, prompt)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] == count(prompt if isinstance(prompt, str) else prompt[0])


def test_chat_prompt_tokens_follow_qwen3s_template(live):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Où est Querétaro ?"}]
    pairs = [(m["role"], m["content"]) for m in messages]
    body = {"model": live.model, "messages": messages, "max_tokens": 2}
    r = live.client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == count_chat(pairs)
    body["chat_template_kwargs"] = {"enable_thinking": False}
    r = live.client.post("/v1/chat/completions", json=body)
    assert r.json()["usage"]["prompt_tokens"] == count_chat(pairs, enable_thinking=False) == count_chat(pairs) + 4
