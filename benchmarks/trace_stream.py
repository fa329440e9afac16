"""Streaming trace replay at scale: a 27M-row week, a 10-minute window, peak memory and time.

Writes a synthetic Azure-2024-format trace (TIMESTAMP,ContextTokens,GeneratedTokens; one week, 27M rows
≈ 44.6 req/s, ≈ 1 GB; the published week-long traces have 17-27M rows) and its gzip, unless they exist,
then runs `grid sim` on 10-minute windows at the trace's start and 5 days in, each in its own process,
and prints wall and CPU time, peak RSS and rows read. The files stay in /tmp: never commit them.

    python benchmarks/trace_stream.py [--dir /tmp] [--rows 27000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WEEK_S = 7 * 86400.0


def write_trace(path: Path, rows: int) -> None:
    rng = np.random.default_rng(1)
    start = dt.date(2024, 5, 10)
    per = 1_000_000
    with path.open("w") as f:
        f.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for lo in range(0, rows, per):
            m = min(per, rows - lo)
            t = np.sort(rng.uniform(lo / rows * WEEK_S, (lo + m) / rows * WEEK_S, m))
            prompt = np.maximum(1, rng.lognormal(6.6, 1.0, m).astype(np.int64))
            output = np.maximum(1, rng.lognormal(5.0, 0.86, m).astype(np.int64))
            whole = t.astype(np.int64)
            frac = ((t - whole) * 1e7).astype(np.int64)  # 7 fractional digits, as Azure writes them
            f.write(
                "".join(
                    f"{start + dt.timedelta(days=s // 86400)} {s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:"
                    f"{s % 60:02d}.{u:07d},{p},{o}\n"
                    for s, u, p, o in zip(whole.tolist(), frac.tolist(), prompt.tolist(), output.tolist(), strict=True)
                )
            )


def run(trace: Path, start: str) -> dict:
    cmd = [sys.executable, "-m", "grid.cli", "sim", "--json", "--duration", "10m"]
    cmd += ["--set", f"demand.trace.path={trace}", "--set", f"demand.trace.start_s={start}"]
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"grid sim failed ({proc.returncode}): {' '.join(cmd)}")
    report = json.loads(out)
    return {
        "trace": trace.name,
        "start": start,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "rows_read": report["meta"]["demand"]["rows_read"],
        "requests": report["grid"]["arrivals"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--rows", type=int, default=27_000_000)
    parser.add_argument("--write", action="store_true", help="only write the trace (run as a child)")
    args = parser.parse_args()
    plain = args.dir / f"grid-week-trace-{args.rows}.csv"
    packed = plain.with_suffix(".csv.gz")
    if args.write:
        write_trace(plain, args.rows)
        return
    if not plain.exists():  # in a child: a forked child's peak RSS would include this process's pages
        child = [sys.executable, __file__, "--write", "--dir", str(args.dir), "--rows", str(args.rows)]
        subprocess.run(child, check=True)
    if not packed.exists():
        with plain.open("rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    print(f"{plain}: {plain.stat().st_size / 1e6:,.0f} MB; {packed}: {packed.stat().st_size / 1e6:,.0f} MB")
    for trace in (plain, packed):
        for start in ("0", "5d"):
            print(json.dumps(run(trace, start)))


if __name__ == "__main__":
    main()
