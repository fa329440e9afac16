"""The OpenAI-compatible surface: request bodies, response shapes and errors.

Bodies are validated by pydantic from the raw bytes; a bad body is a **400** in OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`), as vLLM and SGLang answer, never FastAPI's 422.
Unknown fields are ignored (clients send many). Integer and boolean fields are strict (`"max_tokens":
true` or `"stream": "yes"` is a 400, not 1 or True), as OpenAI's API answers. `ignore_eos` (vLLM's
extension, used by `vllm bench serve`) makes the answer exactly `max_tokens` long — the load
generator uses it to replay a trace.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = Field(default=False, strict=True)


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, strict=True)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, strict=True)
    stream: bool = Field(default=False, strict=True)
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = Field(default=False, strict=True)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, strict=True)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list):
            if not value:
                raise ValueError("prompt must not be empty")
            if isinstance(value[0], str) and len(value) > 1:
                raise ValueError("only one prompt per request is supported")
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens


# --- errors -----------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
            headers["retry-after-ms"] = str(max(1, round(self.retry_after_s * 1000)))
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def parse_body(model: type[BaseModel], raw: bytes) -> Any:
    """Validate a JSON body; any problem is a 400 naming the field."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    first = errors[0] if errors else {}
    param = ".".join(_field_path(first.get("loc", ()))) or None
    if first.get("type") == "json_invalid":
        return ApiError(400, f"The request body is not valid JSON: {first.get('msg', '')}", code="invalid_json")
    message = "; ".join(
        f"{'.'.join(_field_path(e.get('loc', ()))) or 'body'}: {e.get('msg', 'invalid')}" for e in errors[:5]
    )
    return ApiError(400, message, param=param, code="invalid_value")


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _field_path(loc) -> list[str]:
    """A pydantic error location as the request's field path: `body` dropped, and cut at the first
    union-member tag (`str`, `list[str]`, `ContentPart`, …), which names a type, not a field."""
    path = []
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or part[:1].isupper()):
            break
        path.append(str(part))
    return path


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")


# --- responses --------------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
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
    """Server-sent events of one streamed answer, chat or legacy completions."""

    def __init__(self, chat: bool, rid: str, created: int, model: str, include_usage: bool) -> None:
        self.chat = chat
        self.include_usage = include_usage
        self._head = {
            "id": rid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        self._first = True

    def _event(self, choices: list, use: dict | None = None) -> bytes:
        payload = {**self._head, "choices": choices}
        if self.include_usage:
            payload["usage"] = use
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def content(self, text: str, finish: str | None = None) -> bytes:
        if self.chat:
            delta: dict[str, str] = {"content": text}
            if self._first:
                delta = {"role": "assistant", "content": text}
                self._first = False
            return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        return self._event([{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}])

    def usage(self, use: dict) -> bytes:
        return self._event([], use)

    @staticmethod
    def error(err: ApiError) -> bytes:
        return b"data: " + json.dumps(err.body()).encode() + b"\n\n"

    DONE = b"data: [DONE]\n\n"
