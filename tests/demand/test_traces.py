import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from grid.demand.traces import Trace, TraceReader, read_trace, unit_warnings
from grid.errors import GridInputError

TRACES = Path(__file__).parents[3] / "shared" / "data" / "traces" / "azure-llm-2023"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(GridInputError) as info:
        read_trace(path)
    return str(info.value)


def assert_error(path: Path, line: int | None, *words: str) -> None:
    message = error_of(path)
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert message.startswith(prefix), message
    for word in words:
        assert word in message, message


# ------------------------------------------------------------------------------------------ reading


def test_azure_csv_with_seven_fractional_digits(tmp_path):
    path = write(
        tmp_path,
        "t.csv",
        HEADER
        + "2023-11-16 18:17:03.9799600,4808,10\n"
        + "2023-11-16 18:17:04.0319600,3180,8\n"
        + "2023-11-16 18:17:04.0781490,110,27\n",
    )
    trace = read_trace(path)
    assert len(trace) == 3
    np.testing.assert_allclose(trace.arrival_s, [0.0, 0.052, 0.098189], atol=1e-9)
    assert trace.arrival_s.dtype == np.float64
    assert trace.prompt_tokens.dtype == np.int64 and trace.output_tokens.dtype == np.int64
    assert trace.prompt_tokens.tolist() == [4808, 3180, 110]
    assert trace.output_tokens.tolist() == [10, 8, 27]
    assert trace.duration_s == pytest.approx(0.098189)


def test_csv_crlf_blank_lines_bom_no_fraction_and_midnight(tmp_path):
    text = "\ufeff" + HEADER.replace("\n", "\r\n") + "2023-12-31 23:59:59,5,6\r\n\r\n" + "2024-01-01T00:00:01.5,7,8\r\n"
    trace = read_trace(write(tmp_path, "t.csv", text))
    np.testing.assert_allclose(trace.arrival_s, [0.0, 2.5])
    assert trace.prompt_tokens.tolist() == [5, 7]


def test_csv_columns_in_any_order_and_timezone_offsets(tmp_path):
    text = "GeneratedTokens,TIMESTAMP,ContextTokens\n3,2024-05-10 02:00:00+02:00,100\n4,2024-05-10 00:00:01.25Z,200\n"
    trace = read_trace(write(tmp_path, "t.csv", text))
    np.testing.assert_allclose(trace.arrival_s, [0.0, 1.25])
    assert trace.prompt_tokens.tolist() == [100, 200]
    assert trace.output_tokens.tolist() == [3, 4]


def test_rows_out_of_order_are_sorted_stably(tmp_path):
    text = HEADER + (
        "2023-11-16 18:00:05,1,1\n2023-11-16 18:00:01,2,2\n2023-11-16 18:00:05,3,3\n2023-11-16 18:00:03,4,4\n"
    )
    trace = read_trace(write(tmp_path, "t.csv", text))
    assert trace.arrival_s.tolist() == [0.0, 2.0, 4.0, 4.0]
    assert trace.prompt_tokens.tolist() == [2, 4, 1, 3]
    assert trace.output_tokens.tolist() == [2, 4, 1, 3]


def test_jsonl_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    stamps = np.sort(rng.uniform(1.7e12, 1.7e12 + 3.6e6, 500))
    prompt = rng.integers(1, 5000, 500)
    output = rng.integers(1, 900, 500)
    path = tmp_path / "trace.jsonl"
    with path.open("w") as f:
        for t, p, o in zip(stamps, prompt, output, strict=True):
            f.write(json.dumps({"timestamp": float(t), "input_length": int(p), "output_length": int(o)}) + "\n")
            if p % 50 == 0:
                f.write("\n")  # blank lines are skipped
    trace = read_trace(path)
    assert isinstance(trace, Trace)
    np.testing.assert_allclose(trace.arrival_s, (stamps - stamps[0]) / 1000.0, atol=1e-6)
    np.testing.assert_array_equal(trace.prompt_tokens, prompt)
    np.testing.assert_array_equal(trace.output_tokens, output)


def test_jsonl_detected_by_content_not_extension(tmp_path):
    text = '{"timestamp": 2000, "input_length": 3, "output_length": 4, "extra": "ignored"}\n' + (
        '{"timestamp": 500, "input_length": 1, "output_length": 2}'
    )
    trace = read_trace(write(tmp_path, "requests.csv", text))
    assert trace.arrival_s.tolist() == [0.0, 1.5]
    assert trace.prompt_tokens.tolist() == [1, 3]


def test_extension_breaks_the_tie(tmp_path):
    # a .jsonl file whose first line is not JSON is read as JSONL (and refused as such) ...
    assert_error(write(tmp_path, "a.jsonl", "1, 2, 3\n"), 1, "invalid JSON")
    # ... unless it is an Azure CSV under the wrong name
    trace = read_trace(write(tmp_path, "b.jsonl", HEADER + "2023-11-16 18:00:00,1,1\n"))
    assert len(trace) == 1


def test_single_request_has_zero_duration(tmp_path):
    trace = read_trace(write(tmp_path, "t.csv", HEADER + "2023-11-16 18:00:00,1,1"))
    assert len(trace) == 1 and trace.duration_s == 0.0


# ------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    assert_error(tmp_path / "nope.csv", None, "no such file")


def test_directory(tmp_path):
    assert_error(tmp_path, None, "directory")


def test_empty_file(tmp_path):
    assert_error(write(tmp_path, "empty.csv", ""), 1, "no requests")


def test_whitespace_only_file(tmp_path):
    assert_error(write(tmp_path, "blank.jsonl", "\n  \n"), 1, "no requests")


def test_header_only(tmp_path):
    assert_error(write(tmp_path, "h.csv", "\n" + HEADER + "\n"), 2, "no requests", "header")


def test_wrong_header(tmp_path):
    path = write(tmp_path, "h.csv", "time,prompt,output\n2023-11-16 18:00:00,1,1\n")
    assert_error(path, 1, "TIMESTAMP,ContextTokens,GeneratedTokens", "'time,prompt,output'")


def test_wrong_number_of_fields(tmp_path):
    path = write(tmp_path, "f.csv", HEADER + "2023-11-16 18:00:00,1,1\n\n2023-11-16 18:00:01,1\n")
    assert_error(path, 4, "expected 3", "got 2")


def test_unparsable_timestamp(tmp_path):
    path = write(tmp_path, "t.csv", HEADER + "2023-11-16 18:00:00,1,1\n16/11/2023 18:00,1,1\n")
    assert_error(path, 3, "TIMESTAMP", "16/11/2023 18:00")


def test_impossible_date_and_time(tmp_path):
    assert_error(write(tmp_path, "d.csv", HEADER + "2023-02-30 18:00:00,1,1\n"), 2, "invalid TIMESTAMP")
    assert_error(write(tmp_path, "h.csv", HEADER + "2023-02-03 24:00:00,1,1\n"), 2, "out of range")


@pytest.mark.parametrize("value", ["12.5", "0", "-3", "", "1_000", "x"])
def test_bad_token_count_in_csv(tmp_path, value):
    path = write(tmp_path, "n.csv", HEADER + "2023-11-16 18:00:00,1,1\n" + f"2023-11-16 18:00:01,5,{value}\n")
    assert_error(path, 3, "GeneratedTokens", "integer")


def test_binary_file(tmp_path):
    path = write(tmp_path, "b.csv", HEADER.encode() + b"2023-11-16 18:00:00,1,1\n\x00\x01\x02")
    assert_error(path, 3, "not a text file")


def test_not_utf8(tmp_path):
    path = write(tmp_path, "l.csv", HEADER.encode() + b"2023-11-16 18:00:00,1,1\n\xff\xfe,1,1\n")
    assert_error(path, 3, "not UTF-8")


def test_invalid_json(tmp_path):
    path = write(
        tmp_path,
        "j.jsonl",
        '{"timestamp": 1, "input_length": 1, "output_length": 1}\n\n{"timestamp": 2, "input_length": 1,\n',
    )
    assert_error(path, 3, "invalid JSON")


def test_json_not_an_object(tmp_path):
    path = write(tmp_path, "j.jsonl", '{"timestamp": 1, "input_length": 1, "output_length": 1}\n[1, 2, 3]\n')
    assert_error(path, 2, "JSON object", "array")


def test_json_missing_key(tmp_path):
    path = write(tmp_path, "j.jsonl", '{"timestamp": 1, "input_length": 1}\n')
    assert_error(path, 1, "missing key 'output_length'")


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ('"timestamp": "1", "input_length": 1, "output_length": 1', ("'timestamp'", "number", "string")),
        ('"timestamp": 1, "input_length": 2.5, "output_length": 1', ("'input_length'", "integer")),
        ('"timestamp": 1, "input_length": true, "output_length": 1', ("'input_length'", "boolean")),
        ('"timestamp": 1, "input_length": 1, "output_length": null', ("'output_length'", "null")),
    ],
)
def test_json_wrong_type(tmp_path, row, words):
    path = write(tmp_path, "j.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1}\n{' + row + "}\n")
    assert_error(path, 2, *words)


@pytest.mark.parametrize("stamp", ["-5", "NaN", "Infinity", "1e999"])
def test_json_bad_timestamp(tmp_path, stamp):
    path = write(tmp_path, "j.jsonl", f'{{"timestamp": {stamp}, "input_length": 1, "output_length": 1}}\n')
    assert_error(path, 1, "'timestamp'", ">= 0")


@pytest.mark.parametrize("value", ["0", "-1", "10000000000"])
def test_json_token_count_out_of_range(tmp_path, value):
    path = write(tmp_path, "j.jsonl", f'{{"timestamp": 1, "input_length": 4, "output_length": {value}}}\n')
    assert_error(path, 1, "'output_length'", "from 1")


# ----------------------------------------------------------------------------------- the real trace


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"Azure traces not present at {TRACES}")
def test_real_azure_conv_trace():
    trace = read_trace(TRACES / "AzureLLMInferenceTrace_conv.csv")
    assert len(trace) == 19_366
    assert trace.duration_s / 60 == pytest.approx(58.36, abs=0.05)
    assert trace.arrival_s[0] == 0.0 and np.all(np.diff(trace.arrival_s) >= 0)
    assert trace.prompt_tokens.min() >= 1 and trace.output_tokens.min() >= 1
    # first two rows: 18:15:46.6805900 (374, 44) and 18:15:50.9951690 (396, 109)
    assert trace.arrival_s[1] == pytest.approx(4.314579, abs=1e-7)
    assert trace.prompt_tokens[:2].tolist() == [374, 396]
    assert trace.output_tokens[:2].tolist() == [44, 109]


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"Azure traces not present at {TRACES}")
def test_real_azure_code_trace():
    trace = read_trace(TRACES / "AzureLLMInferenceTrace_code.csv")
    assert len(trace) == 8_819
    assert trace.duration_s / 60 == pytest.approx(57.27, abs=0.05)


# ------------------------------------------------------------------------------------ more formats

BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def test_burstgpt_as_published_counts_failed_rows(tmp_path):
    # BurstGPT's README: failed requests have 0 response tokens. They are counted, never silently kept.
    text = BURST_HEADER + (
        "5,ChatGPT,472,18,490,Conversation log\n"
        "45,ChatGPT,1087,0,1087,Conversation log\n"
        "118,GPT-4,417,276,693,API log\n"
        "120,GPT-4,300,0,300,API log\n"
    )
    path = write(tmp_path, "BurstGPT_1.csv", text)
    trace = read_trace(path)
    assert trace.arrival_s.tolist() == [0.0, 113.0]
    assert trace.prompt_tokens.tolist() == [472, 417]
    assert trace.failed_rows == 2
    reader = TraceReader(path, failed_rows="prefill")
    rows = list(reader.chunks())
    assert rows[0].output.tolist() == [18, 1, 276, 1]  # replayed with a 1-token answer
    assert reader.stats.failed == reader.stats.failed_replayed == 2
    assert reader.stats.format == "burstgpt"


def test_burstgpt_session_column_and_bad_values(tmp_path):
    header = "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    path = write(tmp_path, "b3.csv", header + "1.5,abc,2,GPT-4,10,5,15,Conversation log\n2,,1,GPT-4,3,4,7,API log\n")
    rows = list(TraceReader(path).chunks())[0]
    assert rows.sessions == ["abc", None]
    assert_error(write(tmp_path, "t.csv", BURST_HEADER + "x,ChatGPT,1,1,2,API log\n"), 2, "Timestamp", "seconds")
    assert_error(write(tmp_path, "n.csv", BURST_HEADER + "1,ChatGPT,-1,1,2,API log\n"), 2, "Request tokens")


def test_gzip_is_told_by_its_bytes_not_its_name(tmp_path):
    text = HEADER + "2023-11-16 18:00:00,10,2\n2023-11-16 18:00:01.5,20,3\n"
    path = tmp_path / "trace.csv"  # no .gz
    path.write_bytes(gzip.compress(text.encode()))
    trace = read_trace(path)
    assert trace.arrival_s.tolist() == [0.0, 1.5] and trace.prompt_tokens.tolist() == [10, 20]
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(text.encode())[:30])
    assert_error(broken, None, "gzip")


def jsonl_rows(times_ms, prompt=100, output=10):
    return "".join(
        json.dumps({"timestamp": t, "input_length": prompt, "output_length": output}) + "\n" for t in times_ms
    )


def test_window_start_duration_and_limit(tmp_path):
    path = write(tmp_path, "t.jsonl", jsonl_rows(range(0, 100_000, 1000)))  # one request a second for 100 s
    reader = TraceReader(path)
    chunks = list(reader.chunks(start_s=10, end_s=20))
    times = np.concatenate([c.t_s for c in chunks])
    assert times.tolist() == [float(t) for t in range(10, 20)]
    assert reader.stats.before_window == 10 and reader.stats.stopped == "window"
    assert reader.stats.start_line == 11  # where a later pass may seek to
    again = TraceReader(path)
    seeked = list(again.chunks(start_s=10, end_s=20, seek=(reader.stats.start_offset, reader.stats.start_line)))
    assert np.concatenate([c.t_s for c in seeked]).tolist() == times.tolist()
    limited = TraceReader(path)
    assert sum(len(c) for c in limited.chunks(start_s=50, limit=7)) == 7 and limited.stats.stopped == "limit"


def test_streaming_chunks_are_bounded_and_sorted(tmp_path):
    stamps = list(range(0, 10_000, 10))
    stamps[5], stamps[6] = stamps[6], stamps[5]  # out of order inside a chunk: sorted exactly
    stamps[700] = 10  # earlier than rows already handed out: replayed at the latest time so far
    path = write(tmp_path, "t.jsonl", jsonl_rows(stamps))
    reader = TraceReader(path)
    chunks = list(reader.chunks(chunk_rows=100))
    assert max(len(c) for c in chunks) == 100 and sum(len(c) for c in chunks) == 1000
    times = np.concatenate([c.t_s for c in chunks])
    assert np.all(np.diff(times) >= 0)
    assert reader.stats.out_of_order == 1
    assert np.concatenate([c.lines for c in chunks])[:7].tolist() == [1, 2, 3, 4, 5, 7, 6]


def test_hash_ids_are_checked_against_the_declared_block_size(tmp_path):
    row = {"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [7, 8, 9]}
    path = write(tmp_path, "h.jsonl", json.dumps(row) + "\n")
    (chunk,) = TraceReader(path, block_tokens=512).chunks()
    assert chunk.hashes == [(7, 8)]  # only full blocks: 1100 tokens are 2 full 512-token blocks
    with pytest.raises(GridInputError, match="block_tokens"):
        list(TraceReader(path, block_tokens=256).chunks())
    undeclared = TraceReader(path)
    (chunk,) = undeclared.chunks()
    assert chunk.hashes is None and undeclared.stats.hashes_ignored == 1
    bare = write(tmp_path, "b.jsonl", jsonl_rows([0]))
    with pytest.raises(GridInputError, match="missing key 'hash_ids'"):
        list(TraceReader(bare, block_tokens=512).chunks())


@pytest.mark.parametrize(
    ("stamps_ms", "unit", "words"),
    [
        ([i * 0.3 for i in range(12_000)], None, ("implausible", "time_unit: s")),  # an hour written in seconds
        ([i * 3_600_000.0 for i in range(200)], "s", ("implausible", "time_unit: ms")),  # ms read as seconds
        ([5.0] * 200, None, ("one instant",)),
    ],
)
def test_units_warning(tmp_path, stamps_ms, unit, words):
    path = write(tmp_path, "u.jsonl", jsonl_rows(stamps_ms))
    reader = TraceReader(path, time_unit=unit)
    for _ in reader.chunks():
        pass
    (message,) = unit_warnings(path, reader.stats, unit)
    for word in words:
        assert word in message


def test_plausible_traces_draw_no_units_warning(tmp_path):
    path = write(tmp_path, "ok.jsonl", jsonl_rows(range(0, 3_600_000, 300)))  # 3.3 req/s for an hour
    reader = TraceReader(path)
    for _ in reader.chunks():
        pass
    assert unit_warnings(path, reader.stats, None) == []
    with pytest.raises(GridInputError, match="time_unit applies to numeric"):
        list(TraceReader(write(tmp_path, "a.csv", HEADER + "2023-11-16 18:00:00,1,1\n"), time_unit="s").chunks())


@pytest.mark.parametrize("offset", ["", "+00:00", "+02:00", "-05:30"])
def test_azure_2024_rows_skipped_ahead_of_a_window_in_their_utc_offset(tmp_path, offset):
    rows = [f"2024-05-10 23:59:{s:02d}.{s:07d}{offset},{s + 1},5\n" for s in range(0, 60, 2)]
    rows += [f"2024-05-11 00:00:{s:02d}.0000000{offset},{100 + s},5\n" for s in range(0, 60, 2)]
    reader = TraceReader(write(tmp_path, "azure2024.csv", HEADER + "".join(rows)))
    chunks = list(reader.chunks(start_s=61.0, end_s=70.0))
    assert np.concatenate([c.prompt for c in chunks]).tolist() == [102, 104, 106, 108]
    assert reader.stats.before_window == 31
