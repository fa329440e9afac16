"""Build a Hugging Face tokenizer directory for Qwen/Qwen3-8B offline, from PyPI alone.

The benchmark tools (guidellm, inference-perf) need the served model's tokenizer to size prompts and
count output tokens, and would fetch it from the Hugging Face hub, which this machine cannot reach.
Qwen's byte-level BPE vocabulary (151,643 ranks, the same for Qwen, Qwen2 and Qwen3) ships on PyPI
inside the `dashscope` wheel as `dashscope/resources/qwen.tiktoken`. This script takes that one file
out of the wheel (downloaded with `pip download --no-deps`, never installed: dashscope's own
dependencies are a web stack we do not need), converts it with transformers' `TikTokenConverter`,
adds Qwen3's NFC normalizer, its 26 added tokens at their real ids (151643…151668) and a ChatML chat
template, then checks that the result encodes exactly as tiktoken does with the same ranks and
Qwen's split pattern (the gateway's grid/live/tokenizer.py counts with that same tiktoken encoding).

Run it with a Python that has transformers and tiktoken (a tools venv; benchmarks/tools/setup.sh does):

    .venv-tools/guidellm/bin/python benchmarks/tools/qwen_tokenizer.py --out .venv-tools/qwen3-tokenizer

It prints the directory. The directory is build output: keep it out of git (.venv-tools/ is ignored).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

DASHSCOPE = "dashscope==2.0.2"  # pinned: the vocabulary file's source
VOCAB_MEMBER = "dashscope/resources/qwen.tiktoken"
# Qwen's pre-tokenizer split (dashscope/tokenizers/qwen_tokenizer.py PAT_STR; Qwen2/3's tokenizer.json):
# unlike GPT-4's cl100k pattern, digits split one by one (\p{N}, not \p{N}{1,3}).
PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
N_RANKS = 151643
MARKER = "SOURCE.json"  # written once the directory is built and checked
# Qwen3's added tokens in id order from 151643 (its tokenizer_config.json); True marks the special ones
# (the tool-call and think markers are added but not special, so they survive decode(skip_special_tokens)).
ADDED_TOKENS = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
)  # fmt: skip
# ChatML, as Qwen3's template renders plain messages (no tools, no thinking block).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SAMPLES = (
    "Hello, world! The grid routes each request to the zone that answers it best.",
    "  indented\n\n\tcode = f(x)  # 12345 67890\r\n",
    "Grüße aus Frankfurt, Querétaro und กรุงเทพมหานคร — 東京 😀 don't we'll I'M",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "Cafe\u0301 cre\u0300me",  # decomposed accents: NFC-normalized first
)


def vocab_file(cache: Path) -> Path:
    """qwen.tiktoken out of the pinned dashscope wheel (downloaded once into `cache`)."""
    target = cache / "qwen.tiktoken"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # a venv made by uv has no pip of its own: then the machine's python3 downloads it
        python = sys.executable if importlib.util.find_spec("pip") else shutil.which("python3") or "python3"
        pip = [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        done = subprocess.run([*pip, "-d", tmp, DASHSCOPE], capture_output=True, text=True)
        if done.returncode:  # its stderr only then: pip warns about this machine's local indexes every time
            raise SystemExit(f"pip download {DASHSCOPE} failed:\n{done.stderr}")
        (wheel,) = Path(tmp).glob("dashscope-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(VOCAB_MEMBER)
    target.with_suffix(".part").write_bytes(data)
    target.with_suffix(".part").rename(target)  # atomic: a cut download never looks complete
    return target


def build(out: Path, vocab: Path) -> Path:
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(vocab), pattern=PATTERN).converted()
    if backend.get_vocab_size() != N_RANKS:
        raise SystemExit(f"{vocab}: {backend.get_vocab_size()} ranks, expected {N_RANKS}")
    backend.normalizer = normalizers.NFC()  # as Qwen2/3's tokenizer.json (and the gateway's grid/live/tokenizer.py)
    # added in id order, so they take 151643… as in Qwen3's own tokenizer
    backend.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in ADDED_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,  # the default world's context (regions/default.yaml model.context_tokens)
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return out


def check(out: Path, vocab: Path) -> None:
    """The saved directory must encode as tiktoken does with the same ranks, pattern and special tokens."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from transformers import AutoTokenizer

    ranks = load_tiktoken_bpe(str(vocab))
    reference = tiktoken.Encoding(
        "qwen", pat_str=PATTERN, mergeable_ranks=ranks,
        special_tokens={t: N_RANKS + i for i, (t, _) in enumerate(ADDED_TOKENS)},
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    for text in SAMPLES:
        ours = tokenizer.encode(text, add_special_tokens=False)
        theirs = reference.encode(unicodedata.normalize("NFC", text), allowed_special="all")
        if ours != theirs:
            raise SystemExit(f"tokenizer mismatch on {text!r}: {ours} vs tiktoken {theirs}")
        if tokenizer.decode(ours) != unicodedata.normalize("NFC", text):
            raise SystemExit(f"tokenizer does not round-trip {text!r}")
    if tokenizer.convert_tokens_to_ids("<|im_end|>") != 151645 or tokenizer.convert_tokens_to_ids("</think>") != 151668:
        raise SystemExit("added tokens are not at Qwen3's ids")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the tokenizer directory to write")
    parser.add_argument("--cache", type=Path, default=None, help="where qwen.tiktoken is kept (default: OUT/../cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even when OUT already holds a checked tokenizer")
    args = parser.parse_args()
    out = args.out.resolve()
    if args.force or not (out / MARKER).is_file():
        vocab = vocab_file((args.cache or out.parent / "cache").resolve())
        build(out, vocab)
        check(out, vocab)
        # written last: its presence says the directory was built and checked
        (out / MARKER).write_text(json.dumps({"vocabulary": f"{DASHSCOPE}:{VOCAB_MEMBER}", "pattern": PATTERN}))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
