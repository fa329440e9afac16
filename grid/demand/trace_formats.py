"""The line formats of request traces: each turns one line into one row, or says exactly what is wrong.

A row is ``(time, prompt_tokens, output_tokens, prefix_hashes, session)``: ``time`` in seconds on the
trace's own clock (a date's seconds since the first row's midnight, or a number times its unit),
``prefix_hashes`` the chain hashes of the prompt's full blocks (or None), ``session`` a session key
(or None). Three formats, told apart by the first non-blank line (:func:`detect`):

- **Azure** LLM inference traces 2023 and 2024 (Azure Public Dataset, Microsoft, CC BY 4.0):
  ``TIMESTAMP,ContextTokens,GeneratedTokens``, dates ``YYYY-MM-DD HH:MM:SS[.fraction][Z|±HH:MM]``.
- **BurstGPT** as published (github.com/HPMLL/BurstGPT): ``Timestamp,Model,Request tokens,Response
  tokens,Total tokens,Log Type``, the timestamp in seconds; failed requests have 0 response tokens.
  A ``Session ID`` column (the newer releases) keys sessions.
- **JSON Lines** (Mooncake, FAST '25): ``{"timestamp", "input_length", "output_length"}``, timestamp
  in milliseconds; ``hash_ids`` (one id per prompt block, chained: the same id means the same prefix)
  and ``session_id`` are optional.

Each parser also offers a cheap "surely before" test (:meth:`before`) that skips rows ahead of a
replay window without parsing them: that is what lets a week-long trace start on its sixth day.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from grid.errors import GridInputError

CSV_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
JSONL_KEYS = ("timestamp", "input_length", "output_length")
_AZURE_HEADER = sorted(name.lower() for name in CSV_COLUMNS)
_BURST_NEEDED = ("timestamp", "request tokens", "response tokens")

MAX_TOKENS = 10**9  # refuse counts no model has: it also keeps the values far inside int64

_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})([ T])(\d{2}):(\d{2}):(\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?")
_JSON_TS = re.compile(rb'"timestamp"\s*:\s*([-+0-9.eE]+)')

Row = tuple[float, int, int, "tuple[int, ...] | None", "str | None"]


def detect(path: Path, head: str, lineno: int) -> str:
    """The format of a trace from its first non-blank line (the extension only breaks a tie)."""
    if head.startswith(("{", "[")):
        return "jsonl"
    names = [name.strip().lower() for name in head.split(",")]
    if sorted(names) == _AZURE_HEADER:
        return "azure"
    if all(name in names for name in _BURST_NEEDED):
        return "burstgpt"
    suffixes = [s.lower() for s in path.suffixes]
    if any(s in (".jsonl", ".ndjson", ".json") for s in suffixes):
        return "jsonl"
    raise GridInputError(
        f"{path}:{lineno}: expected the header {','.join(CSV_COLUMNS)} (Azure LLM inference trace), "
        f"{','.join(BURSTGPT_COLUMNS)} (BurstGPT) or JSON Lines with keys {', '.join(JSONL_KEYS)}; "
        f"got {head.strip()[:80]!r}"
    )


class AzureCsv:
    """Azure LLM inference trace CSV: columns in any order, dates to any number of fractional digits."""

    name = "azure"
    numeric = False  # dates carry their own unit

    def __init__(self, path: Path, header: str, lineno: int) -> None:
        self.path = path
        names = [name.strip().lower() for name in header.split(",")]
        self.i_ts, self.i_prompt, self.i_output = (names.index(n.lower()) for n in CSV_COLUMNS)
        self.n_fields = len(names)
        self.day0: int | None = None
        self._days: dict[str, int] = {}
        self._sep = " "
        self._offset0 = 0  # the first row's UTC offset (s): the text of later rows is read in it

    def parse(self, line: str, lineno: int) -> Row:
        fields = line.split(",")
        if len(fields) != self.n_fields:
            raise GridInputError(
                f"{self.path}:{lineno}: expected {self.n_fields} comma-separated fields "
                f"({','.join(CSV_COLUMNS)}), got {len(fields)}"
            )
        stamp = fields[self.i_ts].strip()
        m = _TIMESTAMP.fullmatch(stamp)
        if m is None:
            raise GridInputError(
                f"{self.path}:{lineno}: cannot parse TIMESTAMP {stamp[:40]!r}; expected YYYY-MM-DD HH:MM:SS[.fraction]"
            )
        day = self._days.get(stamp[:10])
        if day is None:
            try:
                day = _dt.date(int(m[1]), int(m[2]), int(m[3])).toordinal()
            except ValueError as e:
                raise GridInputError(f"{self.path}:{lineno}: invalid TIMESTAMP {stamp!r}: {e}") from None
            self._days[stamp[:10]] = day
        offset_s = 0
        if m[9] and m[9] != "Z":
            offset = m[9].replace(":", "")
            offset_s = (-1 if offset[0] == "-" else 1) * (int(offset[1:3]) * 3600 + int(offset[3:5]) * 60)
        if self.day0 is None:  # seconds count from the first row's midnight: exact to 1e-10 s
            self.day0, self._sep, self._offset0 = day, m[4], offset_s
        hour, minute, second = int(m[5]), int(m[6]), int(m[7])
        if hour > 23 or minute > 59 or second > 59:
            raise GridInputError(f"{self.path}:{lineno}: invalid TIMESTAMP {stamp!r}: time out of range")
        t = (day - self.day0) * 86400 + hour * 3600 + minute * 60 + second - offset_s
        if m[8]:
            t += float(m[8])
        prompt = _csv_tokens(self.path, lineno, CSV_COLUMNS[1], fields[self.i_prompt], 1)
        output = _csv_tokens(self.path, lineno, CSV_COLUMNS[2], fields[self.i_output], 1)
        return t, prompt, output, None, None

    def before(self, cutoff_s: float) -> Callable[[bytes], bool] | None:
        """Rows whose date and second sort below the cutoff's are before it (one offset per file, as
        the published traces have); the cutoff's own second is parsed in full."""
        if self.i_ts != 0 or self.day0 is None:
            return None
        whole = math.floor(cutoff_s + self._offset0)
        when = _dt.datetime.fromordinal(self.day0) + _dt.timedelta(seconds=whole)
        cut = when.strftime(f"%Y-%m-%d{self._sep}%H:%M:%S").encode()
        return lambda line: line[:19] < cut


class BurstGptCsv:
    """BurstGPT's CSV as published; 0 response tokens marks a failed request (kept as a row: the
    reader counts it and applies the replay's `failed_rows` rule)."""

    name = "burstgpt"
    numeric = True
    default_unit_s = 1.0

    def __init__(self, path: Path, header: str, lineno: int, unit_s: float) -> None:
        self.path = path
        names = [name.strip().lower() for name in header.split(",")]
        self.i_ts, self.i_prompt, self.i_output = (names.index(n) for n in _BURST_NEEDED)
        self.i_session = names.index("session id") if "session id" in names else -1
        self.n_fields = len(names)
        self.unit_s = unit_s

    def parse(self, line: str, lineno: int) -> Row:
        fields = line.split(",")
        if len(fields) != self.n_fields:
            raise GridInputError(
                f"{self.path}:{lineno}: expected {self.n_fields} comma-separated fields "
                f"({','.join(BURSTGPT_COLUMNS)}), got {len(fields)}"
            )
        text = fields[self.i_ts].strip()
        try:
            stamp = float(text)
        except ValueError:
            stamp = math.nan
        if not (math.isfinite(stamp) and stamp >= 0):
            raise GridInputError(f"{self.path}:{lineno}: Timestamp must be a number >= 0 (seconds), got {text[:40]!r}")
        prompt = _csv_tokens(self.path, lineno, "Request tokens", fields[self.i_prompt], 0)
        output = _csv_tokens(self.path, lineno, "Response tokens", fields[self.i_output], 0)
        session = (fields[self.i_session].strip() or None) if self.i_session >= 0 else None
        return stamp * self.unit_s, prompt, output, None, session

    def before(self, cutoff_s: float) -> Callable[[bytes], bool] | None:
        if self.i_ts != 0:
            return None
        cut = cutoff_s / self.unit_s

        def before(line: bytes) -> bool:
            try:
                return float(line[: line.index(b",")]) < cut
            except ValueError:
                return False  # parsed in full, which names the problem

        return before


class JsonLines:
    """One JSON object per line; `hash_ids` are checked against the declared block size."""

    name = "jsonl"
    numeric = True
    default_unit_s = 1e-3

    def __init__(self, path: Path, unit_s: float, block_tokens: int) -> None:
        self.path = path
        self.unit_s = unit_s
        self.block_tokens = block_tokens
        self.unit = "milliseconds" if unit_s == 1e-3 else "seconds"

    def parse(self, line: str, lineno: int) -> Row:
        where = f"{self.path}:{lineno}"
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
            raise GridInputError(f"{where}: 'timestamp' must be a number ({self.unit}), got {_json_type(stamp)}")
        try:
            stamp = float(stamp)
        except OverflowError:
            stamp = math.inf
        if not math.isfinite(stamp) or stamp < 0:
            raise GridInputError(f"{where}: 'timestamp' must be a finite number >= 0 ({self.unit}), got {stamp}")
        prompt = _json_tokens(where, "input_length", obj["input_length"])
        output = _json_tokens(where, "output_length", obj["output_length"])
        hashes = self._hashes(where, obj.get("hash_ids"), prompt)
        session = obj.get("session_id")
        return stamp * self.unit_s, prompt, output, hashes, None if session is None else str(session)

    def _hashes(self, where: str, ids: object, prompt: int) -> tuple[int, ...] | None:
        if ids is None:
            if self.block_tokens:
                raise GridInputError(f"{where}: missing key 'hash_ids' (demand.trace.block_tokens is set)")
            return None
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise GridInputError(f"{where}: 'hash_ids' must be an array of integers")
        if not self.block_tokens:
            return ()  # present but undeclared: counted and reported, never silently used
        full, blocks = divmod(prompt, self.block_tokens)
        if len(ids) not in (full, full + (blocks > 0)):
            raise GridInputError(
                f"{where}: 'hash_ids' has {len(ids)} blocks but input_length {prompt} at block_tokens "
                f"{self.block_tokens} makes {full + (blocks > 0)}: is demand.trace.block_tokens right?"
            )
        return tuple(ids[:full])  # only full blocks are cacheable (vLLM hashes full blocks)

    def before(self, cutoff_s: float) -> Callable[[bytes], bool] | None:
        cut = cutoff_s / self.unit_s
        search = _JSON_TS.search

        def before(line: bytes) -> bool:
            m = search(line)
            try:
                return m is not None and float(m[1]) < cut
            except ValueError:
                return False

        return before


def _csv_tokens(path: Path, line: int, column: str, field: str, low: int) -> int:
    text = field.strip()
    if text.isascii() and text.isdigit():
        value = int(text)
        if low <= value <= MAX_TOKENS:
            return value
    raise GridInputError(f"{path}:{line}: {column} must be an integer from {low} to {MAX_TOKENS:,}, got {text[:40]!r}")


def _json_tokens(where: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridInputError(f"{where}: {key!r} must be an integer, got {_json_type(value)}")
    if not 1 <= value <= MAX_TOKENS:
        raise GridInputError(f"{where}: {key!r} must be from 1 to {MAX_TOKENS:,}, got {value}")
    return value


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return f"{name} {json.dumps(value)[:40]}" if kind is str else name
    return f"a number ({value})"
