"""Did a load test's requests work? The failure rule of `grid loadtest`.

**A run fails when more than 1% of its requests failed** (`MAX_FAILED_SHARE`): any HTTP status but
200, no answer, or a malformed stream (loadtests/chat.py). It then exits 1, names the failures by
status (`HTTP 404 ×972`), and reports no knee. Why 1%: the run's figures are percentiles up to p99,
and its step-ramp knee is where p99 TTFT crosses the SLO; once more than 1% of the requests have no
TTFT at all, p99 describes the answered requests only, not the traffic that was sent, and a knee
read from it is a figure of the failures. It is also the bar a ramp step fails by (`find_knee`'s
`max_failed_share`). A few failures (at most 1%: a zone killed mid-stream in an outage drill,
connections cut at the end of the run) are reported with their statuses and do not fail the run.
An outage drill's admin call that failed fails the run too (the drill did not happen).

**A step ramp is judged on its first step** (its lowest load): a ramp is meant to go past
saturation, so failures in its upper steps (a target shedding load with 429 or 503) are what it
measures (such a step breaks the SLO in `find_knee`), but more than 1% failed at the lowest load says
the target fails requests whatever the load, and there is no knee to find.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_FAILED_SHARE = 0.01


def status_label(status: str) -> str:
    """A record's status (loadtests/chat.py `Outcome.status`) as people read it."""
    if status == "http_0":
        return "no HTTP answer"
    if status.startswith("http_"):
        return f"HTTP {status[5:]}"
    return {"bad_stream": "malformed stream", "error": "client error"}.get(status, status)


@dataclass
class Verdict:
    requests: int  # judged requests (the run's, or a ramp's first step)
    failed: int
    statuses: dict[str, int] = field(default_factory=dict)  # failed requests by status label
    scope: str = "the run"
    top_errors: list[tuple[str, int]] = field(default_factory=list)  # Locust's failure messages
    note: str = ""  # when there is nothing to judge
    admin_failed: list[str] = field(default_factory=list)  # the outage drill's failed admin calls
    run_requests: int = 0  # all the run's requests, when the scope is narrower (a ramp's first step)
    run_failed: int = 0
    run_statuses: dict[str, int] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    @property
    def failed_run(self) -> bool:
        return self.requests == 0 or self.share > MAX_FAILED_SHARE or bool(self.admin_failed)

    def counts_text(self, statuses: dict[str, int] | None = None) -> str:
        statuses = self.statuses if statuses is None else statuses
        return ", ".join(f"{label} ×{n}" for label, n in sorted(statuses.items(), key=lambda kv: -kv[1]))

    def message(self) -> str:
        """The verdict line, the whole run's failures when judged on less, the most frequent failure
        messages of a failed run."""
        if self.requests == 0:
            lines = [f"grid loadtest: FAILED: no request was sent or answered ({self.note or 'no records'})"]
        else:
            judged = f"{self.failed} of {self.requests} requests of {self.scope} failed ({self.share:.1%})"
            if self.share > MAX_FAILED_SHARE:
                lines = [f"grid loadtest: FAILED: {judged}; more than {MAX_FAILED_SHARE:.0%} fails a run: "]
                lines[0] += self.counts_text()
            elif self.failed:
                lines = [f"grid loadtest: ok: {judged}, at most {MAX_FAILED_SHARE:.0%} may: {self.counts_text()}"]
            else:
                lines = [f"grid loadtest: ok: {judged}"]
            if self.run_requests != self.requests:
                whole = f"  the whole run: {self.run_failed} of {self.run_requests} failed"
                lines.append(whole + (f": {self.counts_text(self.run_statuses)}" if self.run_failed else ""))
        if self.admin_failed:
            lines.append(f"grid loadtest: FAILED: the drill's admin calls failed: {', '.join(self.admin_failed)}")
        if self.failed_run:
            lines += [f"  ×{n}: {text}" for text, n in self.top_errors[:3]]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["top_errors"] = [list(e) for e in self.top_errors]
        out["failed_share"] = self.share
        out["failed_run"] = self.failed_run
        out["max_failed_share"] = MAX_FAILED_SHARE
        return out


def judge(records: Iterable[dict], until_s: float | None = None, scope: str = "the run") -> Verdict:
    """The verdict over `records` (read_records rows), only those sent before `until_s` if given."""
    every = list(records)
    rows = [r for r in every if until_s is None or r["t_s"] < until_s]

    def counts(rs: list[dict]) -> dict[str, int]:
        return dict(Counter(status_label(r["status"]) for r in rs if not r["ok"]))

    run_statuses = counts(every)
    return Verdict(
        len(rows),
        sum(not r["ok"] for r in rows),
        counts(rows),
        scope,
        run_requests=len(every),
        run_failed=sum(run_statuses.values()),
        run_statuses=run_statuses,
    )


def top_failures(failures_csv: Path, limit: int = 3) -> list[tuple[str, int]]:
    """The most frequent failure messages of Locust's `*_failures.csv` (chat requests only)."""
    if not failures_csv.is_file():
        return []
    counts: Counter = Counter()
    with open(failures_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("Method") == "ADMIN":
                continue
            text = " ".join((row.get("Error") or "").split())
            wrapped = re.fullmatch(r"CatchResponseError\(([\x27\x22])(.*)\1\)", text)  # Locust keeps the repr
            text = wrapped.group(2) if wrapped else text
            try:
                counts[text[:200]] += int(row.get("Occurrences") or 0)
            except ValueError:
                continue
    return counts.most_common(limit)
