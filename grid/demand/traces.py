"""Reading user request traces: when each request arrived and how many tokens it carried.

Two formats are read, chosen by the file's content (the extension only breaks a tie):

1. The Azure LLM inference trace CSV (Azure Public Dataset, Microsoft, CC BY 4.0)::

       TIMESTAMP,ContextTokens,GeneratedTokens
       2023-11-16 18:17:03.9799600,4808,10

   Timestamps are ``YYYY-MM-DD HH:MM:SS[.fraction]`` (any number of fractional digits; the
   Azure files have 7, one more than :mod:`datetime` takes) with an optional ``T`` separator and
   an optional ``Z`` / ``+HH:MM`` offset. The three columns may come in any order.

2. JSON Lines, one object per line::

       {"timestamp": 1700158623979.96, "input_length": 4808, "output_length": 10}

   ``timestamp`` is in milliseconds (any origin); other keys are ignored; blank lines are skipped.

Token counts must be integers >= 1. Rows out of time order are sorted by arrival with a stable sort
(rows with equal timestamps keep their file order), and arrivals are shifted so the first request
arrives at 0.0 s.

Every problem with the file raises :class:`~grid.errors.GridInputError` with a message
``"{path}:{line}: {what is wrong}"``, lines numbered from 1 as an editor shows them. A file that
cannot be opened at all has no line: its message is ``"{path}: {what is wrong}"``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grid.errors import GridInputError

__all__ = ["Trace", "read_trace", "CSV_COLUMNS", "JSONL_KEYS"]

CSV_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
JSONL_KEYS = ("timestamp", "input_length", "output_length")
_CSV_HEADER = sorted(name.lower() for name in CSV_COLUMNS)

# Refuse token counts no model has: it also keeps the values far inside int64.
_MAX_TOKENS = 10**9

_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True)
class Trace:
    """Requests in arrival order.

    ``arrival_s`` is float64 seconds since the first request (non-decreasing, starts at 0.0);
    ``prompt_tokens`` and ``output_tokens`` are int64 arrays (>= 1) of the same length.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival (0.0 for a single request)."""
        return float(self.arrival_s[-1]) if len(self) else 0.0


def read_trace(path: str | Path) -> Trace:
    """Read a request trace (Azure CSV or JSONL, see the module docstring)."""
    path = Path(path)
    text = _read_text(path)
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise GridInputError(f"{path}:1: no requests: the file is empty")
    head = lines[first].strip()
    looks_like_header = sorted(name.strip().lower() for name in head.split(",")) == _CSV_HEADER
    is_jsonl = head.startswith(("{", "[")) or (
        path.suffix.lower() in (".jsonl", ".ndjson", ".json") and not looks_like_header
    )
    if is_jsonl:
        times, prompt, output = _parse_jsonl(path, lines)
        scale = 1e-3
    else:
        times, prompt, output = _parse_csv(path, lines, first)
        scale = 1.0
    t = np.asarray(times, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t = t[order]
    arrival_s = (t - t[0]) * scale
    return Trace(
        arrival_s=arrival_s,
        prompt_tokens=np.asarray(prompt, dtype=np.int64)[order],
        output_tokens=np.asarray(output, dtype=np.int64)[order],
    )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GridInputError(f"{path}: cannot read the trace: no such file") from None
    except IsADirectoryError:
        raise GridInputError(f"{path}: cannot read the trace: it is a directory") from None
    except PermissionError:
        raise GridInputError(f"{path}: cannot read the trace: permission denied") from None
    except OSError as e:
        raise GridInputError(f"{path}: cannot read the trace: {e.strerror or e}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise GridInputError(f"{path}:{line}: not a text file (NUL byte); expected a CSV or JSONL request trace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise GridInputError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); expected a CSV or JSONL request trace"
        ) from None


# ---------------------------------------------------------------------------------------------- CSV


def _parse_csv(path: Path, lines: list[str], header_index: int):
    header = [name.strip().lower() for name in lines[header_index].rstrip("\r").split(",")]
    expected = [name.lower() for name in CSV_COLUMNS]
    if sorted(header) != _CSV_HEADER:
        raise GridInputError(
            f"{path}:{header_index + 1}: expected the header {','.join(CSV_COLUMNS)} "
            f"(Azure LLM inference trace) or JSON Lines with keys {', '.join(JSONL_KEYS)}; "
            f"got {lines[header_index].strip()[:80]!r}"
        )
    i_ts, i_prompt, i_output = (header.index(name) for name in expected)
    n_fields = len(header)

    match_ts = _TIMESTAMP.fullmatch
    day_cache: dict[str, int] = {}
    times: list[float] = []
    prompt: list[int] = []
    output: list[int] = []
    day0 = None
    for index in range(header_index + 1, len(lines)):
        line = lines[index]
        if not line or line.isspace():
            continue
        fields = line.split(",")
        if len(fields) != n_fields:
            raise GridInputError(
                f"{path}:{index + 1}: expected {n_fields} comma-separated fields "
                f"({','.join(CSV_COLUMNS)}), got {len(fields)}"
            )
        stamp = fields[i_ts].strip()
        m = match_ts(stamp)
        if m is None:
            raise GridInputError(
                f"{path}:{index + 1}: cannot parse TIMESTAMP {stamp[:40]!r}; expected YYYY-MM-DD HH:MM:SS[.fraction]"
            )
        date = stamp[:10]
        day = day_cache.get(date)
        if day is None:
            try:
                day = _dt.date(int(m[1]), int(m[2]), int(m[3])).toordinal()
            except ValueError as e:
                raise GridInputError(f"{path}:{index + 1}: invalid TIMESTAMP {stamp!r}: {e}") from None
            day_cache[date] = day
        if day0 is None:
            day0 = day
        hour, minute, second = int(m[4]), int(m[5]), int(m[6])
        if hour > 23 or minute > 59 or second > 59:
            raise GridInputError(f"{path}:{index + 1}: invalid TIMESTAMP {stamp!r}: time out of range")
        t = (day - day0) * 86400 + hour * 3600 + minute * 60 + second
        if m[7]:
            t += float(m[7])
        if m[8] and m[8] != "Z":
            offset = m[8].replace(":", "")
            sign = -1 if offset[0] == "-" else 1
            t -= sign * (int(offset[1:3]) * 3600 + int(offset[3:5]) * 60)
        times.append(t)
        prompt.append(_csv_tokens(path, index + 1, CSV_COLUMNS[1], fields[i_prompt]))
        output.append(_csv_tokens(path, index + 1, CSV_COLUMNS[2], fields[i_output]))
    if not times:
        raise GridInputError(f"{path}:{header_index + 1}: no requests: the file has only a header")
    return times, prompt, output


def _csv_tokens(path: Path, line: int, column: str, field: str) -> int:
    text = field.strip()
    if text.isascii() and text.isdigit():
        value = int(text)
        if 1 <= value <= _MAX_TOKENS:
            return value
    raise GridInputError(f"{path}:{line}: {column} must be an integer from 1 to {_MAX_TOKENS:,}, got {text[:40]!r}")


# -------------------------------------------------------------------------------------------- JSONL


def _parse_jsonl(path: Path, lines: list[str]):
    times: list[float] = []
    prompt: list[int] = []
    output: list[int] = []
    for index, line in enumerate(lines):
        if not line or line.isspace():
            continue
        where = f"{path}:{index + 1}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise GridInputError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
        except RecursionError:
            raise GridInputError(f"{where}: invalid JSON: nested too deeply") from None
        if not isinstance(obj, dict):
            raise GridInputError(
                f"{where}: expected a JSON object with keys {', '.join(JSONL_KEYS)}, got {_json_type(obj)}"
            )
        for key in JSONL_KEYS:
            if key not in obj:
                raise GridInputError(f"{where}: missing key {key!r}")
        stamp = obj["timestamp"]
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            raise GridInputError(f"{where}: 'timestamp' must be a number (milliseconds), got {_json_type(stamp)}")
        try:
            stamp = float(stamp)
        except OverflowError:
            stamp = math.inf
        if not math.isfinite(stamp) or stamp < 0:
            raise GridInputError(f"{where}: 'timestamp' must be a finite number >= 0 (milliseconds), got {stamp}")
        times.append(stamp)
        prompt.append(_json_tokens(where, "input_length", obj["input_length"]))
        output.append(_json_tokens(where, "output_length", obj["output_length"]))
    if not times:  # pragma: no cover - read_trace only calls this with a non-blank line present
        raise GridInputError(f"{path}:1: no requests")
    return times, prompt, output


def _json_tokens(where: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridInputError(f"{where}: {key!r} must be an integer, got {_json_type(value)}")
    if not 1 <= value <= _MAX_TOKENS:
        raise GridInputError(f"{where}: {key!r} must be from 1 to {_MAX_TOKENS:,}, got {value}")
    return value


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return f"{name} {json.dumps(value)[:40]}" if kind is str else name
    return f"a number ({value})"
