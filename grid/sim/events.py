"""The kinds of events in the simulator's heap (an int each: the heap compares tuples)."""

from typing import Final

_DELIVER: Final = 0
_ZONE: Final = 1
_FAULT: Final = 2
_REPORT: Final = 3
_HEDGE: Final = 4
_RETRY: Final = 5
_TICK: Final = 6
_END: Final = 7
_SCALE: Final = 8
