"""The kinds of events in the simulator's heap (an int each: the heap compares tuples)."""

_DELIVER, _ZONE, _FAULT, _REPORT, _HEDGE, _RETRY, _TICK, _END, _SCALE = 0, 1, 2, 3, 4, 5, 6, 7, 8
