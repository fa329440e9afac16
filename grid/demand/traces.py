"""Reading request traces: when each request arrived, how many tokens it carried, and its prefix blocks.

Formats (Azure 2023/2024 CSV, BurstGPT CSV, Mooncake-style JSON Lines) are described and parsed in
:mod:`grid.demand.trace_formats`; a file may be gzip-compressed (told by its magic bytes, not its name).

:class:`TraceReader` streams a file in chunks of at most ``CHUNK_ROWS`` rows, keeping only the rows of
a window ``[start_s, end_s)`` (seconds after the file's first row) and at most ``limit`` of them, so
memory does not grow with the file: rows ahead of the window are skipped by a cheap test without
being parsed, and reading stops at the first row past it. Files are taken to be in time order, as the
published traces are: rows out of order within a chunk are sorted (stably); a row earlier than one
already handed out is replayed at that time and counted in ``out_of_order``.

:func:`read_trace` reads a whole file into a :class:`Trace` (sorted exactly, the first arrival at 0.0):
for fitting size models, not for replay.

Every problem with the file raises :class:`~grid.errors.GridInputError` with a message
``"{path}:{line}: {what is wrong}"``, lines numbered from 1 as an editor shows them; a file that
cannot be opened at all has no line.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from grid.demand.trace_formats import (
    CSV_COLUMNS,
    JSONL_KEYS,
    AzureCsv,
    BurstGptCsv,
    JsonLines,
    detect,
)
from grid.errors import GridInputError

__all__ = ["Trace", "read_trace", "TraceReader", "TraceStats", "RowChunk", "CSV_COLUMNS", "JSONL_KEYS"]

CHUNK_ROWS = 50_000
UNITS_S = {"s": 1.0, "ms": 1e-3}
# One trace of one service: the busiest public ones (Azure 2024, Mooncake) run at tens of requests per
# second; a year is longer than any published trace (BurstGPT's four months are the longest).
MAX_PLAUSIBLE_RPS = 1_000.0
MAX_PLAUSIBLE_SPAN_S = 366 * 86400.0
_EXPECTED = "a CSV or JSONL request trace"


@dataclass(frozen=True)
class Trace:
    """Requests in arrival order.

    ``arrival_s`` is float64 seconds since the first request (non-decreasing, starts at 0.0);
    ``prompt_tokens`` and ``output_tokens`` are int64 arrays (>= 1) of the same length.
    ``failed_rows`` counts rows left out as failed requests (BurstGPT's 0 response tokens).
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    failed_rows: int = 0

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival (0.0 for a single request)."""
        return float(self.arrival_s[-1]) if len(self) else 0.0


@dataclass
class TraceStats:
    """What one pass over a trace saw. Times are seconds after the file's first row."""

    format: str = ""
    rows: int = 0  # data rows read (before the window and in it)
    before_window: int = 0  # skipped: earlier than start_s
    replayed: int = 0  # handed out as requests
    failed: int = 0  # 0 output tokens: a failed request (BurstGPT)
    failed_replayed: int = 0  # … of which replayed as a 1-token answer (failed_rows: prefill)
    empty_prompt: int = 0  # 0 prompt tokens: nothing to serve, skipped
    out_of_order: int = 0  # earlier than a row already handed out: replayed at that time
    hashes_ignored: int = 0  # rows with hash_ids while no block size was declared
    sessions: int = 0  # rows with a session key
    first_s: float = math.nan  # first and last replayed arrival
    last_s: float = math.nan
    prompt_sum: int = 0
    output_sum: int = 0
    stopped: str = "end of file"  # or "window" (a row past end_s) or "limit"
    start_offset: int = -1  # byte offset (decompressed) and line of the window's first row
    start_line: int = 0
    gzip: bool = False

    @property
    def mean_prompt(self) -> float:
        return self.prompt_sum / self.replayed if self.replayed else math.nan

    @property
    def mean_output(self) -> float:
        return self.output_sum / self.replayed if self.replayed else math.nan


@dataclass(frozen=True)
class RowChunk:
    """Rows in time order: times (s after the file's first row), sizes, and per row the prefix
    hashes and session key where the trace has them (else None lists)."""

    t_s: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    hashes: list[tuple[int, ...] | None] | None = None
    sessions: list[str | None] | None = None
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.t_s)


class TraceReader:
    """Streams one trace file; `stats` fills in as chunks are read.

    `time_unit` (``s``/``ms``) is the unit of numeric timestamps (default: the format's own, ms for
    JSON Lines, s for BurstGPT); `block_tokens` the tokens per ``hash_ids`` block (0: none declared);
    `failed_rows` what becomes of a failed request: ``skip`` or ``prefill`` (replayed with 1 output token).
    """

    def __init__(
        self, path: str | Path, *, time_unit: str | None = None, block_tokens: int = 0, failed_rows: str = "skip"
    ) -> None:
        self.path = Path(path)
        self.time_unit = time_unit
        self.block_tokens = block_tokens
        self.failed_rows = failed_rows
        self.stats = TraceStats()
        self.t0_abs: float | None = None  # the first row's time on the file's own clock

    # --- opening and lines ---------------------------------------------------------------------------

    def _open(self) -> BinaryIO:
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed by the caller (or with the GzipFile over it)
        except FileNotFoundError:
            raise GridInputError(f"{self.path}: cannot read the trace: no such file") from None
        except IsADirectoryError:
            raise GridInputError(f"{self.path}: cannot read the trace: it is a directory") from None
        except PermissionError:
            raise GridInputError(f"{self.path}: cannot read the trace: permission denied") from None
        except OSError as e:
            raise GridInputError(f"{self.path}: cannot read the trace: {e.strerror or e}") from None
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            self.stats.gzip = True
            return gzip.GzipFile(fileobj=raw, mode="rb")
        raw.seek(0)
        return raw

    def _readline(self, f: BinaryIO) -> bytes:
        try:
            return f.readline()
        except (OSError, EOFError, zlib.error) as e:
            raise GridInputError(f"{self.path}: cannot read the trace: broken gzip data ({e})") from None

    def _text(self, raw: bytes, lineno: int) -> str:
        if b"\0" in raw:
            raise GridInputError(f"{self.path}:{lineno}: not a text file (NUL byte); expected {_EXPECTED}")
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise GridInputError(
                f"{self.path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x}); expected {_EXPECTED}"
            ) from None
        return text.rstrip("\r\n")

    def _parser(self, fmt: str, head: str, lineno: int) -> AzureCsv | BurstGptCsv | JsonLines:
        if fmt == "azure":
            if self.time_unit is not None:
                raise GridInputError(
                    f"{self.path}: demand.trace.time_unit applies to numeric timestamps (JSON Lines, BurstGPT); "
                    "this Azure trace has dates"
                )
            return AzureCsv(self.path, head, lineno)
        if fmt == "burstgpt":
            return BurstGptCsv(self.path, head, lineno, UNITS_S[self.time_unit or "s"])
        return JsonLines(self.path, UNITS_S[self.time_unit or "ms"], self.block_tokens)

    # --- the stream ----------------------------------------------------------------------------------

    def chunks(  # noqa: C901 - one pass with its phases inline: the skip loop runs per row of big files
        self,
        start_s: float = 0.0,
        end_s: float = math.inf,
        limit: int | None = None,
        chunk_rows: int = CHUNK_ROWS,
        seek: tuple[int, int] | None = None,
        ordered: bool = True,
    ) -> Iterator[RowChunk]:
        """Rows with ``start_s <= t < end_s`` (at most `limit`), in chunks. `seek` = (byte offset, line)
        of the window's first row from an earlier pass skips straight there (gzip: by decompressing
        without splitting lines, several times faster than skipping row by row).
        `ordered` False hands rows out in file order (for :func:`read_trace`, which sorts them all)."""
        st = self.stats
        f = self._open()
        try:
            readline = self._readline
            lineno = pos = 0
            while True:  # the first non-blank line tells the format (and is a CSV's header)
                raw = readline(f)
                if not raw:
                    raise GridInputError(f"{self.path}:1: no requests: the file is empty")
                lineno += 1
                pos += len(raw)
                head = self._text(raw, lineno)
                if head.strip():
                    break
            fmt = detect(self.path, head, lineno)
            parser = self._parser(fmt, head, lineno)
            st.format = fmt
            header_line = lineno if fmt != "jsonl" else 0
            pending: tuple[str, int, int] | None = (head, lineno, pos - len(raw)) if fmt == "jsonl" else None
            before = None
            sort_t: list[float] = []
            sizes_p: list[int] = []
            sizes_o: list[int] = []
            hashes: list = []
            sessions: list = []
            lines: list[int] = []
            watermark = -math.inf
            in_window = False
            failed_prefill = self.failed_rows == "prefill"
            while True:
                if pending is not None:
                    line, ln, row_pos = pending
                    pending = None
                else:
                    raw = readline(f)
                    if not raw:
                        break
                    lineno += 1
                    row_pos = pos
                    pos += len(raw)
                    if before is not None and before(raw):
                        st.rows += 1
                        st.before_window += 1
                        continue
                    line = self._text(raw, lineno)
                    ln = lineno
                    if not line or line.isspace():
                        continue
                row = parser.parse(line, ln)
                st.rows += 1
                if self.t0_abs is None:
                    self.t0_abs = row[0]
                    if start_s > 0:
                        if seek is not None and seek[0] > pos:
                            f.seek(seek[0])
                            pos, lineno = seek[0], seek[1] - 1
                        before = parser.before(self.t0_abs + start_s)
                t = row[0] - self.t0_abs
                if t < start_s:
                    if not in_window:
                        st.before_window += 1
                        continue
                    st.out_of_order += 1  # behind the window's start once it has begun: replayed there
                    t = start_s
                if t >= end_s:
                    st.stopped = "window"
                    break
                if not in_window:
                    in_window, before = True, None
                    st.start_offset, st.start_line = row_pos, ln  # gzip: of the decompressed bytes
                prompt, output = row[1], row[2]
                if output == 0:
                    st.failed += 1
                    if not failed_prefill:
                        continue
                    output = 1
                    st.failed_replayed += 1
                if prompt == 0:
                    st.empty_prompt += 1
                    continue
                h = row[3]
                if h is not None and not h and not self.block_tokens:
                    st.hashes_ignored += 1
                    h = None
                if row[4] is not None:
                    st.sessions += 1
                sort_t.append(t)
                sizes_p.append(prompt)
                sizes_o.append(output)
                hashes.append(h)
                sessions.append(row[4])
                lines.append(ln)
                st.replayed += 1
                if len(sort_t) >= chunk_rows:
                    rows = (sort_t, sizes_p, sizes_o, hashes, sessions, lines)
                    chunk, watermark = self._flush(*rows, watermark, ordered)
                    sort_t, sizes_p, sizes_o, hashes, sessions, lines = [], [], [], [], [], []
                    yield chunk
                if limit is not None and st.replayed >= limit:
                    st.stopped = "limit"
                    break
            if st.rows == 0:
                raise GridInputError(f"{self.path}:{header_line or 1}: no requests: the file has only a header")
            if sort_t:
                chunk, watermark = self._flush(sort_t, sizes_p, sizes_o, hashes, sessions, lines, watermark, ordered)
                yield chunk
        finally:
            f.close()

    def _flush(self, t, p, o, h, s, lines, watermark: float, ordered: bool) -> tuple[RowChunk, float]:
        st = self.stats
        times = np.asarray(t, dtype=np.float64)
        prompt = np.asarray(p, dtype=np.int64)
        output = np.asarray(o, dtype=np.int64)
        line_no = np.asarray(lines, dtype=np.int64)
        if ordered:
            order = np.argsort(times, kind="stable")
            if np.any(order != np.arange(len(order))):
                times, prompt, output, line_no = times[order], prompt[order], output[order], line_no[order]
                h = [h[i] for i in order]
                s = [s[i] for i in order]
            late = times < watermark
            if late.any():
                st.out_of_order += int(late.sum())
                times[late] = watermark
            watermark = float(times[-1])
        if math.isnan(st.first_s):
            st.first_s = float(times.min())
        st.last_s = max(float(times.max()), st.last_s) if not math.isnan(st.last_s) else float(times.max())
        st.prompt_sum += int(prompt.sum())
        st.output_sum += int(output.sum())
        any_hashes = any(x is not None for x in h)
        any_sessions = any(x is not None for x in s)
        chunk = RowChunk(times, prompt, output, h if any_hashes else None, s if any_sessions else None, line_no)
        return chunk, watermark


def read_trace(path: str | Path) -> Trace:
    """Read a whole request trace (any format, see the module docstring), sorted exactly by arrival
    (stably: rows with equal times keep their file order), shifted so the first arrives at 0.0.
    Failed requests (0 output tokens) are left out and counted in `failed_rows`."""
    reader = TraceReader(path)
    chunks = list(reader.chunks(start_s=-math.inf, ordered=False))
    if not chunks:
        raise GridInputError(f"{reader.path}: no requests: every row is a failed request or has an empty prompt")
    t = np.concatenate([c.t_s for c in chunks])
    order = np.argsort(t, kind="stable")
    t = t[order]
    return Trace(
        arrival_s=t - t[0],
        prompt_tokens=np.concatenate([c.prompt for c in chunks])[order],
        output_tokens=np.concatenate([c.output for c in chunks])[order],
        failed_rows=reader.stats.failed,
    )


def unit_warnings(path: Path, stats: TraceStats, unit: str | None) -> list[str]:
    """Warnings for a span or rate no trace has in its stated unit: seconds written where milliseconds
    belong squeeze an hour into 3.6 s; milliseconds read as seconds stretch a day over three years."""
    n = stats.replayed + stats.failed - stats.failed_replayed + stats.empty_prompt
    if stats.format == "azure" or n < 100:
        return []
    span = stats.last_s - stats.first_s
    unit = unit or ("ms" if stats.format == "jsonl" else "s")
    other = "s" if unit == "ms" else "ms"
    fix = f"if they are in {'seconds' if other == 's' else 'milliseconds'}, set demand.trace.time_unit: {other}"
    named = "milliseconds" if unit == "ms" else "seconds"
    if span <= 0:
        return [f"{path}: {n:,} requests all at one instant: are the timestamps in {named}? ({fix})"]
    rate = (n - 1) / span
    if rate > MAX_PLAUSIBLE_RPS:
        return [
            f"{path}: {n:,} requests in {span:.3g} s ({rate:,.0f} req/s) is implausible for a trace read in "
            f"{named} ({fix})"
        ]
    if span > MAX_PLAUSIBLE_SPAN_S or rate < 1 / 3600:
        return [
            f"{path}: {n:,} requests over {span / 86400:,.0f} days ({rate * 3600:.2g} req/h) is implausible for a "
            f"trace read in {named} ({fix})"
        ]
    return []
