"""The inference grid: one model of zones, routing and demand, run in virtual or wall-clock time."""
