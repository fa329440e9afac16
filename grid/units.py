"""Parsing of human durations ("90s", "1h", "200ms") into seconds."""

import re

_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|d)?\s*$")


def parse_duration_s(text: str | float | int) -> float:
    """Seconds from a number (already seconds) or a string with a unit: ms, s, m/min, h, d."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"expected a duration like 30s, 5m or 1h, got {text!r}")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"a duration must be ≥ 0, got {text!r}")
    return seconds
