"""Qwen's tokenizer for the live gateway: `prompt_tokens` as vLLM serving Qwen3 reports them.

**Vocabulary.** Qwen's byte-level BPE (151,643 ranks) is `qwen.tiktoken`, shipped inside the
Apache-2.0 `dashscope` package (Alibaba Cloud's SDK), and read here with `tiktoken` (MIT), offline.
Only the file is used: `importlib.util.find_spec` locates the package without importing it (the
SDK's import pulls in its network client, 0.6–5 s). The `tiktoken.Encoding` is built as dashscope's
own does (`dashscope/tokenizers/qwen_tokenizer.py`, `QwenTokenizer.__init__`: the same `PAT_STR`,
the file's ranks, special tokens from id 151643), with Qwen3's 26 added tokens (its
`tokenizer.json`: `<|endoftext|>` 151643 … `</think>` 151668) instead of Qwen1's `<|extra_N|>`.
Qwen2 and Qwen3 kept Qwen1's BPE and pre-tokenizer regex, so ids agree ("Hello world" → 9707, 1879).

**Encoding as Hugging Face's tokenizer (the one vLLM runs) does:** added tokens are split out of the
text first, wherever they occur (a user typing `<|im_end|>` gets the special token, as in vLLM);
each piece between them is NFC-normalized (Qwen2/3's `normalizer`) and BPE-encoded. No BOS is added.

**Chat template** (`chat_prompt`): Qwen3's, as vLLM renders it without tools (the API refuses
tools): `<|im_start|>{role}\\n{content}<|im_end|>\\n` per system/user message, consecutive `tool`
messages folded into one user turn of `<tool_response>` blocks, assistant turns with their
reasoning (`<think>…</think>`) dropped before the last user query and kept after it, and
`<|im_start|>assistant\\n` as the generation prompt (plus `<think>\\n\\n</think>\\n\\n` when the request
sets `chat_template_kwargs.enable_thinking: false`). `developer` messages render as nothing: Qwen3's
template has no branch for that role. Content parts are joined with "\\n" before (vLLM's "string"
content format). Not modelled: `reasoning_content` fields on past assistant turns (the API does not
parse them) and tool definitions and calls (the API refuses them).

**Cost** (`benchmarks/tokenizer_cost.py`): the first use loads the vocabulary (≈0.3–0.7 s, once; the
async helpers do it in a worker thread). Encoding costs ≈1.3–1.8× the word-piece regex this replaced,
per character. The ids of each piece of text between added tokens (in a chat prompt, each
message) are cached, so a repeated system prompt or a conversation's resent history is not encoded
again (the gateway needs the ids, not only their count: they name the prompt's KV blocks,
`grid.live.prefix_hashes`). What is left to encode runs inline up to `INLINE_MAX_CHARS` and in a worker thread
beyond (tiktoken releases the GIL), so one huge prompt does not stall the other streams.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import re
import threading
import unicodedata
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tiktoken is imported on first use: importing this module stays cheap (Locust, the CLI)
    import tiktoken

# Qwen's pre-tokenizer, as dashscope's qwen_tokenizer.PAT_STR and Qwen2/3's tokenizer.json `Split`.
PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
BPE_RANKS = 151_643  # lines of qwen.tiktoken: ids 0..151642
ADDED_TOKENS = (  # Qwen3's added tokens, in id order from 151643
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>",
)  # fmt: skip
SPECIAL_IDS = {token: BPE_RANKS + i for i, token in enumerate(ADDED_TOKENS)}
# Qwen3's embedding rows (config.json `vocab_size`). vLLM refuses a prompt id above
# max(tokenizer's largest id, this - 1) as "out of vocabulary" (v1 `InputProcessor._validate_model_input`).
MODEL_VOCAB_SIZE = 151_936
# <|im_start|> user \n … <|im_end|> \n <|im_start|> assistant \n: one user message's tokens besides its
# content (tests/live/test_tokenizer.py checks it against `count_chat`).
CHAT_OVERHEAD_TOKENS = 8
# Above this many characters not in the cache, the async helpers encode in a worker thread
# (benchmarks/tokenizer_cost.py: encoding costs 50-70 µs per KiB of English text, so 8 KiB stalls the
# event loop ≈0.5 ms, and a thread hop costs the loop 60-100 µs: past this it is the cheaper of the two).
INLINE_MAX_CHARS = 8 * 1024
# fancy-regex gives up on a whitespace run of ~10⁶ characters ("Max stack size exceeded for
# backtracking"); such text is encoded in pieces of this size (exact but for a token at each seam).
_FALLBACK_CHUNK = 1 << 18

CACHE_ENTRIES = 4096  # pieces whose ids are kept (least recently used out)
CACHE_MAX_IDS = 1 << 22  # and at most this many ids in all (16 MiB)
CACHE_MIN_CHARS = 64  # shorter pieces are their own cache key; longer ones are keyed by a digest

_SPECIAL_SPLIT = re.compile("(" + "|".join(map(re.escape, ADDED_TOKENS)) + ")")
_NONE: frozenset[str] = frozenset()  # pieces hold no added token: they were split out
_encoding: tiktoken.Encoding | None = None
_load_lock = threading.Lock()
_cache: OrderedDict[str | bytes, array] = OrderedDict()
_cached_ids = 0
_cache_lock = threading.Lock()  # count() also runs in worker threads


def vocab_file() -> Path:
    """dashscope's `resources/qwen.tiktoken`, found without importing dashscope."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dashscope package (Qwen's vocabulary) is not installed: pip install dashscope")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"


def encoding() -> tiktoken.Encoding:
    """Qwen's `tiktoken.Encoding`, built once (thread-safe: the async helpers may build it in a worker)."""
    global _encoding
    if _encoding is None:
        with _load_lock:
            if _encoding is None:
                import tiktoken

                # Read as dashscope's QwenTokenizer._load_tiktoken_bpe does ("base64 rank" lines);
                # tiktoken.load would also copy the file into a temp-dir cache.
                lines = vocab_file().read_bytes().splitlines()
                ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines if line)}
                if len(ranks) != BPE_RANKS:
                    raise RuntimeError(f"qwen.tiktoken holds {len(ranks)} ranks, expected {BPE_RANKS}")
                _encoding = tiktoken.Encoding(
                    "qwen3", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=SPECIAL_IDS
                )
    return _encoding


def _encode_piece(piece: str) -> list[int]:
    """Ids of text holding no added token: NFC (Qwen2/3's normalizer; ASCII is already NFC), then BPE."""
    enc = encoding()
    if not piece.isascii():
        piece = unicodedata.normalize("NFC", piece)
    try:  # not encode_ordinary: on a regex error it panics (a BaseException) where encode raises ValueError
        return enc.encode(piece, allowed_special=_NONE, disallowed_special=())
    except ValueError:  # a whitespace run beyond fancy-regex's backtracking limit
        chunks = (piece[at : at + _FALLBACK_CHUNK] for at in range(0, len(piece), _FALLBACK_CHUNK))
        return [token for chunk in chunks for token in enc.encode(chunk, allowed_special=_NONE, disallowed_special=())]


def encode(text: str) -> list[int]:
    """Qwen token ids of `text`, added tokens included wherever they occur (see the module docstring)."""
    ids: list[int] = []
    for i, piece in enumerate(_SPECIAL_SPLIT.split(text)):  # odd items are added tokens
        if i % 2:
            ids.append(SPECIAL_IDS[piece])
        elif piece:
            ids.extend(_encode_piece(piece))
    return ids


# --- encoding prompts, with a cache of the pieces between added tokens ------------------------------
# The pieces of a chat prompt are its messages ("user\n" + content, "system\n" + …) and the template's
# "\n" and "assistant\n": a system prompt repeats across requests and a conversation resends its
# history every turn, so their ids are kept (the prefix cache needs the ids, not only their count).
# A piece is its own key when short, else a 128-bit digest of it stands in; the cache is bounded in
# entries and in ids held (CACHE_MAX_IDS × 4 bytes).


def _key(piece: str) -> str | bytes:
    if len(piece) < CACHE_MIN_CHARS:
        return piece
    return hashlib.blake2b(piece.encode("utf-8", "surrogatepass"), digest_size=16).digest()


# A prompt's parts, in order: an added token's id, or the ids of a piece (None until encoded).
_Parts = list[int | array | None]
_Todo = list[tuple[int, str | bytes, str]]  # (index in the parts, cache key, piece)


def _plan(text: str) -> tuple[_Parts, _Todo]:
    """The prompt's parts with cached pieces filled in, and the pieces left to encode."""
    parts: _Parts = []
    todo: _Todo = []
    with _cache_lock:
        for i, piece in enumerate(_SPECIAL_SPLIT.split(text)):  # odd items are added tokens
            if i % 2:
                parts.append(SPECIAL_IDS[piece])
            elif piece:
                key = _key(piece)
                ids = _cache.get(key)
                if ids is None:
                    todo.append((len(parts), key, piece))
                else:
                    _cache.move_to_end(key)
                parts.append(ids)
    return parts, todo


def _encode_todo(parts: _Parts, todo: _Todo) -> _Parts:
    global _cached_ids
    encoded = [(at, key, array("I", _encode_piece(piece))) for at, key, piece in todo]  # outside the lock
    with _cache_lock:
        for at, key, ids in encoded:
            parts[at] = ids
            if len(ids) > CACHE_MAX_IDS // 4:
                continue  # one huge piece would flush the cache
            if key not in _cache:
                _cached_ids += len(ids)
            _cache[key] = ids
            while len(_cache) > CACHE_ENTRIES or _cached_ids > CACHE_MAX_IDS:
                _cached_ids -= len(_cache.popitem(last=False)[1])
    return parts


def _count(parts: _Parts) -> int:
    return sum(1 if isinstance(part, int) else len(part) for part in parts)  # type: ignore[arg-type]


def _join(parts: _Parts) -> array:
    ids = array("I")
    for part in parts:
        if isinstance(part, int):
            ids.append(part)
        else:
            ids.extend(part)  # type: ignore[arg-type]
    return ids


def prompt_ids(text: str) -> array:
    """`encode(text)` as an array of ids, with cached pieces not encoded again."""
    parts, todo = _plan(text)
    return _join(_encode_todo(parts, todo) if todo else parts)


def count(text: str) -> int:
    """`len(encode(text))`, with cached pieces not encoded again."""
    parts, todo = _plan(text)
    return _count(_encode_todo(parts, todo) if todo else parts)


def chat_prompt(messages: Sequence[tuple[str, str]], enable_thinking: bool = True) -> str:
    """The prompt Qwen3's chat template makes of (role, content) messages, with the generation prompt."""
    last = len(messages) - 1
    last_query = last  # the template's ns.last_query_index: the last user turn that is not a tool result
    for i in range(last, -1, -1):
        role, content = messages[i]
        if role == "user" and not (content.startswith("<tool_response>") and content.endswith("</tool_response>")):
            last_query = i
            break
    out: list[str] = []
    for i, (role, content) in enumerate(messages):
        if role in ("user", "system"):
            out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        elif role == "assistant":
            reasoning = ""
            if "</think>" in content:  # the template moves a past turn's thinking out of its content
                parts = content.split("</think>")
                reasoning = parts[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
                content = parts[-1].lstrip("\n")
            if i > last_query and (i == last or reasoning):
                thought, answer = reasoning.strip("\n"), content.lstrip("\n")
                out.append(f"<|im_start|>assistant\n<think>\n{thought}\n</think>\n\n{answer}")
            else:
                out.append(f"<|im_start|>assistant\n{content}")
            out.append("<|im_end|>\n")
        elif role == "tool":
            if i == 0 or messages[i - 1][0] != "tool":
                out.append("<|im_start|>user")
            out.append(f"\n<tool_response>\n{content}\n</tool_response>")
            if i == last or messages[i + 1][0] != "tool":
                out.append("<|im_end|>\n")
    out.append("<|im_start|>assistant\n" if enable_thinking else "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    return "".join(out)


def count_chat(messages: Sequence[tuple[str, str]], enable_thinking: bool = True) -> int:
    return count(chat_prompt(messages, enable_thinking))


async def prompt_ids_async(text: str) -> array:
    """`prompt_ids`, whose encoding runs in a worker thread when it would stall the event loop: the first
    load, or more than INLINE_MAX_CHARS characters not in the cache (tiktoken releases the GIL)."""
    if _encoding is None:
        await asyncio.to_thread(encoding)
    parts, todo = _plan(text)
    if todo:
        if sum(len(piece) for _, _, piece in todo) > INLINE_MAX_CHARS:
            parts = await asyncio.to_thread(_encode_todo, parts, todo)
        else:
            parts = _encode_todo(parts, todo)
    return _join(parts)


async def chat_ids_async(messages: Sequence[tuple[str, str]], enable_thinking: bool = True) -> array:
    """The ids of the chat prompt (Qwen3's template), off the event loop when it would stall on it."""
    return await prompt_ids_async(chat_prompt(messages, enable_thinking))


async def count_async(text: str) -> int:
    return len(await prompt_ids_async(text))


async def count_chat_async(messages: Sequence[tuple[str, str]], enable_thinking: bool = True) -> int:
    return len(await chat_ids_async(messages, enable_thinking))
