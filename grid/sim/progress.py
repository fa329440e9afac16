"""A progress bar over simulated time."""

from __future__ import annotations


class Progress:
    """A progress bar over simulated time, on stderr, only when it is a terminal or forced."""

    def __init__(self, total_s: float) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=round(total_s), unit="sim-s", desc="simulating", leave=False)
        self._done = 0

    def update(self, t_s: float) -> None:
        step = int(t_s) - self._done
        if step > 0:
            self._bar.update(step)
            self._done += step

    def close(self) -> None:
        self._bar.close()
