"""Errors in OpenAI's shape (`ApiError`), and the 400 that names the field of a bad request body.

`validation_error` turns pydantic's errors into one message naming the field (`param`), never
echoing the input; `number_out_of_range` names the field of a number too long for the JSON parser
(more than `JSON_MAX_DIGITS` digits) without converting it; `check_content_type` refuses bodies that
are not JSON (415). The request schemas that raise them are `grid.live.openai_api`'s.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi.responses import JSONResponse

JSON_MAX_DIGITS = 4300  # pydantic-core's JSON parser refuses longer numbers ("number out of range")
UNSUPPORTED = "unsupported_parameter"


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


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    errors = _relevant(errors)
    first = errors[0] if errors else {}
    param = ".".join(_field_path(first.get("loc", ()))) or None
    if first.get("type") == "json_invalid":
        return ApiError(400, f"The request body is not valid JSON: {first.get('msg', '')}", code="invalid_json")
    lines = (f"{'.'.join(_field_path(e.get('loc', ()))) or 'body'}: {e.get('msg', 'invalid')}" for e in errors)
    message = "; ".join(list(dict.fromkeys(lines))[:5])  # pydantic messages never echo the input
    code = UNSUPPORTED if first.get("type") == UNSUPPORTED else "invalid_value"
    return ApiError(400, message, param=param, code=code)


def _relevant(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The errors worth reporting: in a union, the members the input did not even have the type of
    ("Input should be a valid string" for a list) are dropped when another member got further
    (`prompt: [1, -1]` is about the token id, not about not being a string)."""
    unions: dict[tuple, bool] = {}  # field path before the first type tag -> a member got past its type
    for e in errors:
        key = _union_of(e.get("loc", ()))
        if key is not None:
            unions[key] = unions.get(key, False) or not _type_mismatch(e)
    return [e for e in errors if not (_type_mismatch(e) and unions.get(_union_of(e.get("loc", ())), False))]


def _type_mismatch(error: dict[str, Any]) -> bool:
    return str(error.get("type", "")).endswith("_type")  # string_type, list_type, int_type, dict_type, …


def _is_tag(part: Any) -> bool:
    """A union-member tag in a pydantic location (`str`, `list[str]`, `constrained-str`, `ContentPart`):
    a type, not a field (the API's field names never hold `[` or `-` nor start with a capital)."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or "-" in part or part[:1].isupper())


def _union_of(loc) -> tuple | None:
    """The location up to its first union-member tag; None when it has none."""
    for i, part in enumerate(loc):
        if _is_tag(part):
            return tuple(loc[:i])
    return None


def _field_path(loc) -> list[str]:
    """A pydantic error location as the request's field path: `body` and union-member tags dropped
    (`("prompt", "list[int]", 2)` is `prompt.2`)."""
    return [str(part) for part in loc if part != "body" and not _is_tag(part)]


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}
_INTEGER_PART = re.compile(r"-?(\d*)")


class _TooLong:
    """Marks a number too long for pydantic-core's JSON parser."""


def number_out_of_range(raw: bytes) -> ApiError:
    """The 400 for a number of more than JSON_MAX_DIGITS digits, naming its field. The stdlib parser
    finds it: its hooks get each number as text, which is measured, never converted."""

    def number(text: str) -> object:  # called for every number: the regex only for long ones
        return (
            _TooLong if len(text) > JSON_MAX_DIGITS and len(_INTEGER_PART.match(text).group(1)) > JSON_MAX_DIGITS else 0
        )

    try:
        path = _path_of(json.loads(raw, parse_int=number, parse_float=number), _TooLong)
    except (ValueError, RecursionError):  # not JSON to the stdlib either (or too deep): no field to name
        path = None
    param = ".".join(path) if path else None
    return ApiError(
        400,
        f"{param or 'body'}: number out of range (more than {JSON_MAX_DIGITS} digits)",
        param=param,
        code="invalid_value",
    )


def _path_of(document: Any, marker: object) -> list[str] | None:
    """The path (keys and indices) of the first `marker` in a parsed JSON document, in document order.
    Iterative (the document may nest as deep as the parser allows); a path is built only for it."""
    if document is marker:
        return []
    if not isinstance(document, dict | list):
        return None
    path: list[str] = []
    stack = [_children(document)]  # one iterator per open container; path holds the keys between them
    while stack:
        for key, child in stack[-1]:
            if child is marker:
                return [*path, str(key)]
            if isinstance(child, dict | list):
                path.append(str(key))
                stack.append(_children(child))
                break
        else:  # this container holds none
            stack.pop()
            if stack:
                path.pop()
    return None


def _children(container: dict | list):
    return iter(container.items()) if isinstance(container, dict) else enumerate(container)


JSON_MEDIA_TYPE = "application/json"


def check_content_type(headers) -> None:
    """415 unless the body is declared JSON (`application/json` or an `application/...+json` type;
    parameters such as `charset` aside). No Content-Type at all is allowed (raw-bytes clients send
    none); the media types a browser may send cross-site without a preflight (text/plain, form
    encodings) are not JSON, so such a POST never reaches a model."""
    value = headers.get("content-type")
    if value is None:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return
    raise ApiError(
        415,
        f"Content-Type must be {JSON_MEDIA_TYPE}, not {value[:64]!r}.",
        param="Content-Type",
        code="unsupported_media_type",
    )


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")
