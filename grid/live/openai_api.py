"""The OpenAI-compatible surface: request bodies and response shapes (errors: `grid.live.api_errors`).

Bodies are validated by pydantic from the raw bytes; a bad body is a **400** in OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`), as vLLM and SGLang answer, never FastAPI's 422.
Integer and boolean fields are strict (`"max_tokens": true` or `"stream": "yes"` is a 400, not 1 or
True), as OpenAI's API answers. `ignore_eos` (vLLM's extension, used by `vllm bench serve`) makes the
answer exactly `max_tokens` long — the load generator uses it to replay a trace.

Honest semantics: a field is either served or refused, never silently dropped.
- Served: `stop` (≤ 4 sequences of 1–256 characters; the answer is cut before the first, see
  `grid.live.intake.apply_stop`), `seed`, `max_tokens`/`max_completion_tokens`, `stream`,
  `stream_options.include_usage`, `ignore_eos`. Sampling knobs (`temperature`, `top_p`, penalties,
  `logit_bias`) are accepted: the text is synthetic, so they have nothing to change.
- Refused with 400 `unsupported_parameter` naming the field, unless the value asks for nothing:
  `logprobs`/`top_logprobs`, `tools`/`tool_choice`/`functions`/`function_call`, `response_format`
  other than text, audio output; on completions `echo`, `best_of` > 1, `suffix`.
- Unknown fields are ignored (clients send many).
Every number and list is bounded, so no input is ever formatted or walked at unbounded cost: integers
fit int64 (token ids Qwen3's vocabulary, as vLLM checks them), at most 2,048 messages, and a number
too long for the JSON parser (more than 4,300 digits) is a 400 naming its field, not an opaque
"invalid JSON". A token-id prompt is `[1, 2]` or a batch of one, `[[1, 2]]`; larger batches are a 400.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from grid.live import tokenizer
from grid.live.api_errors import (  # noqa: F401  (the errors are part of this surface: api.ApiError, …)
    UNSUPPORTED,
    ApiError,
    check_content_type,
    model_not_found,
    number_out_of_range,
    validation_error,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # OpenAI's and vLLM's range for `seed`; bounds every integer
MAX_TOKEN_ID = tokenizer.MODEL_VOCAB_SIZE - 1  # above it vLLM answers "Token id … is out of vocabulary"
MAX_STOP = 4  # OpenAI: "Up to 4 sequences where the API will stop generating further tokens"
# Real stop sequences are short delimiters ("\n\n", "</answer>", "Observation:"); an engine checks each
# one after every token over the last len(stop) characters, so a bound keeps that work per token small.
MAX_STOP_CHARS = 256
MAX_MESSAGES = 2048  # OpenAI and Azure OpenAI refuse more ("maximum length 2048")
MAX_CONTENT_PARTS = 2048  # per message; clients send a handful (text, images), the same bound as messages
# A token-id prompt longer than the model's context is refused by the context check (with the real
# numbers); this static bound only caps validation, above any plausible context (1 Mi tokens).
MAX_PROMPT_TOKEN_IDS = 1 << 20
MAX_TOP_LOGPROBS = 20  # chat: OpenAI's range 0..20
MAX_COMPLETION_LOGPROBS = 5  # completions: OpenAI's range 0..5

TokenLimit = Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, strict=True)]
TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID, strict=True)]


def _refuse_unless(harmless: Callable[[Any], bool], why: str) -> AfterValidator:
    """A validator refusing (`unsupported_parameter`) any value but the ones that ask for nothing."""

    def check(value: Any) -> Any:
        if value is not None and not harmless(value):
            raise PydanticCustomError(UNSUPPORTED, "{why}", {"why": why})  # a template: braces stay out
        return value

    return AfterValidator(check)


def _check_stop(value: str | list[str] | None) -> str | list[str] | None:
    """At most MAX_STOP sequences, each 1..MAX_STOP_CHARS characters (one clear message each)."""
    stops = [value] if isinstance(value, str) else value or []
    if len(stops) > MAX_STOP:
        raise PydanticCustomError(
            "too_long", "at most {max} stop sequences, got {n}", {"max": MAX_STOP, "n": len(stops)}
        )
    for stop in stops:
        if not stop:
            raise PydanticCustomError("string_too_short", "a stop sequence must not be empty")
        if len(stop) > MAX_STOP_CHARS:
            raise PydanticCustomError(
                "string_too_long", "a stop sequence is at most {max} characters", {"max": MAX_STOP_CHARS}
            )
    return value


_STOP_STRING_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
Stop = Annotated[
    str | Annotated[list[str], Field(fail_fast=True)] | None,
    AfterValidator(_check_stop),
    WithJsonSchema(
        {
            "anyOf": [
                _STOP_STRING_SCHEMA,
                {"type": "array", "items": _STOP_STRING_SCHEMA, "maxItems": MAX_STOP},
                {"type": "null"},
            ]
        }
    ),
]
_NO_TOOLS = "the grid's synthetic answers never call a tool"
NoTools = Annotated[
    Annotated[list[dict[str, Any]], Field(fail_fast=True)] | None,
    _refuse_unless(lambda v: not v, f"tool calling is not supported: {_NO_TOOLS}; send none"),
]
ToolChoice = Annotated[
    Literal["none", "auto", "required"] | dict[str, Any] | None,
    _refuse_unless(lambda v: v in ("none", "auto"), f'only "none" or "auto" is supported: {_NO_TOOLS}'),
]
FunctionCall = Annotated[
    Literal["none", "auto"] | dict[str, Any] | None,
    _refuse_unless(lambda v: v in ("none", "auto"), f'only "none" or "auto" is supported: {_NO_TOOLS}'),
]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = Field(default=False, strict=True)
    continuous_usage_stats: bool = Field(default=False, strict=True)  # vLLM's: usage in every chunk


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: TokenLimit | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, strict=True)
    stop: Stop = None
    seed: Int64 | None = None
    stream: bool = Field(default=False, strict=True)
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = Field(default=False, strict=True)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def continuous_usage(self) -> bool:
        """Usage so far in every chunk: vLLM's `continuous_usage_stats`, which needs `include_usage`."""
        return self.include_usage and bool(self.stream_options and self.stream_options.continuous_usage_stats)

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """`stop` as a tuple (empty: no stop sequence)."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS, fail_fast=True)] | None = None

    def text(self) -> str:
        """The content as the chat template sees it: text parts joined by "\\n", as vLLM joins them."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


_NO_LOGPROBS = "the grid serves synthetic text, with no token probabilities"


class ChatCompletionRequest(_Common):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES, fail_fast=True)
    max_completion_tokens: TokenLimit | None = None
    logprobs: Annotated[
        bool | None, Field(strict=True), _refuse_unless(lambda v: not v, f"logprobs are not supported: {_NO_LOGPROBS}")
    ] = None
    top_logprobs: Annotated[
        int | None,
        Field(ge=0, le=MAX_TOP_LOGPROBS, strict=True),
        _refuse_unless(lambda v: v == 0, f"top_logprobs are not supported: {_NO_LOGPROBS}; send 0 or omit it"),
    ] = None
    tools: NoTools = None
    tool_choice: ToolChoice = None
    functions: NoTools = None
    function_call: FunctionCall = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)  # no tools are ever called: no effect
    response_format: Annotated[
        ResponseFormat | None,
        _refuse_unless(
            lambda v: v.type == "text", "only the text response format is supported: answers are plain text"
        ),
    ] = None
    modalities: Annotated[
        Annotated[list[str], Field(max_length=8, fail_fast=True)] | None,
        _refuse_unless(lambda v: set(v) <= {"text"}, 'only the "text" modality is supported'),
    ] = None
    audio: Annotated[dict[str, Any] | None, _refuse_unless(lambda v: False, "audio output is not supported")] = None
    chat_template_kwargs: dict[str, Any] | None = None  # vLLM's; Qwen3's template reads `enable_thinking`

    @property
    def enable_thinking(self) -> bool:
        """Qwen3's template closes the thinking block up front only for an explicit `false`."""
        return not (self.chat_template_kwargs and self.chat_template_kwargs.get("enable_thinking") is False)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Common):
    prompt: (
        str
        | Annotated[list[str], Field(max_length=MAX_PROMPT_TOKEN_IDS, fail_fast=True)]
        | Annotated[list[TokenId], Field(max_length=MAX_PROMPT_TOKEN_IDS, fail_fast=True)]
        | Annotated[
            list[Annotated[list[TokenId], Field(max_length=MAX_PROMPT_TOKEN_IDS, fail_fast=True)]],
            Field(max_length=MAX_PROMPT_TOKEN_IDS, fail_fast=True),
        ]  # a batch of token-id prompts: one is served
    )
    # Any number asks for log probabilities (0: the sampled tokens' own), so only null is harmless.
    logprobs: Annotated[
        int | None,
        Field(ge=0, le=MAX_COMPLETION_LOGPROBS, strict=True),
        _refuse_unless(lambda v: False, f"logprobs are not supported: {_NO_LOGPROBS}; omit it"),
    ] = None
    echo: Annotated[
        bool | None,
        Field(strict=True),
        _refuse_unless(lambda v: not v, "echo is not supported: answers never repeat the prompt"),
    ] = None
    best_of: Annotated[
        int | None,
        Field(ge=1, le=INT64_MAX, strict=True),
        _refuse_unless(lambda v: v == 1, "best_of > 1 is not supported: one answer per request"),
    ] = None
    suffix: Annotated[
        str | None, _refuse_unless(lambda v: not v, "suffix is not supported: answers are never inserted")
    ] = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list):
            if not value or (isinstance(value[0], list) and not value[0]):
                raise ValueError("prompt must not be empty")
            if isinstance(value[0], str | list) and len(value) > 1:
                raise ValueError("only one prompt per request is supported")
        return value

    @property
    def single_prompt(self) -> str | list[int]:
        """The one prompt: its text, or its token ids (`[1, 2]` and the batch of one `[[1, 2]]` alike)."""
        prompt = self.prompt
        return prompt[0] if isinstance(prompt, list) and isinstance(prompt[0], str | list) else prompt

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens


# --- bodies ---------------------------------------------------------------------------------


def parse_body(model: type[BaseModel], raw: bytes) -> Any:
    """Validate a JSON body; any problem is a 400 naming the field."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid" and "number out of range" in errors[0].get("msg", ""):
            raise number_out_of_range(raw) from None
        raise validation_error(errors) from None


# --- responses --------------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict:
    """OpenAI's usage object; `cached_tokens`: prompt tokens served from the zone's prefix cache."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def chat_completion(rid: str, created: int, model: str, text: str, finish: str, use: dict) -> dict:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": use,
    }


def text_completion(rid: str, created: int, model: str, text: str, finish: str, use: dict) -> dict:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": use,
    }


class ChunkWriter:
    """Server-sent events of one streamed answer, chat or legacy completions. With `continuous_usage`
    (vLLM's `continuous_usage_stats`) every content chunk carries the usage so far, else `usage` is
    null until the final usage chunk (`include_usage`)."""

    def __init__(
        self,
        chat: bool,
        rid: str,
        created: int,
        model: str,
        include_usage: bool,
        continuous_usage: bool = False,
        prompt_tokens: int = 0,
    ) -> None:
        self.chat = chat
        self.include_usage = include_usage
        self.continuous_usage = continuous_usage
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = 0  # known with the first token
        self._head = {
            "id": rid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        self._first = True
        # The common chunk (no role, no finish, no running usage), one per token, as two byte strings
        # around the JSON of its text: the same bytes as `_event` builds, at a fraction of its cost.
        head = json.dumps(self._head, separators=(",", ":"))[:-1]
        opening = '"delta":{"content":' if chat else '"text":'
        closing = "}" if chat else ""
        tail = ',"usage":null}' if include_usage else "}"
        self._plain_head = f'data: {head},"choices":[{{"index":0,{opening}'.encode()
        self._plain_tail = f'{closing},"logprobs":null,"finish_reason":null}}]{tail}\n\n'.encode()

    def _event(self, choices: list, use: dict | None = None) -> bytes:
        payload = {**self._head, "choices": choices}
        if self.include_usage:
            payload["usage"] = use
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def content(self, text: str, finish: str | None = None, tokens_so_far: int = 0) -> bytes:
        if finish is None and not self.continuous_usage and not (self.chat and self._first):
            return self._plain_head + json.dumps(text).encode() + self._plain_tail
        use = usage(self.prompt_tokens, tokens_so_far, self.cached_tokens) if self.continuous_usage else None
        if self.chat:
            delta: dict[str, str] = {"content": text}
            if self._first:
                delta = {"role": "assistant", "content": text}
                self._first = False
            return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], use)
        return self._event([{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}], use)

    def usage(self, use: dict) -> bytes:
        return self._event([], use)

    @staticmethod
    def error(err: ApiError) -> bytes:
        return b"data: " + json.dumps(err.body()).encode() + b"\n\n"

    DONE = b"data: [DONE]\n\n"
