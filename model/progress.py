"""The training progress bar, measured against whichever limit will stop the run.

With a time budget (`max_seconds`, every preset) the bar counts seconds of the budget, so its
ETA is the time left; without one it counts epochs. When the epochs would run out before the
budget (judged from the mean epoch time so far), the bar's total shrinks to that projection, so
the ETA stays true either way. The epoch count and the losses ride on the bar as postfix.
"""

from __future__ import annotations

from collections.abc import Callable

SECONDS_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
REFRESH_SECONDS = 0.5


class TrainingProgress:
    def __init__(self, epochs: int, max_seconds: float, *, enabled: bool = True,
                 make_bar: Callable[..., object] | None = None):
        self.epochs, self.max_seconds = epochs, max_seconds
        self.bar = None
        self.shown = 0.0
        if not enabled:
            return
        if make_bar is None:
            from tqdm import tqdm as make_bar
        if max_seconds:
            self.bar = make_bar(total=max_seconds, desc="training", unit="s", dynamic_ncols=True,
                                bar_format=SECONDS_FORMAT)
        else:
            self.bar = make_bar(total=epochs, desc="epochs", unit="ep", dynamic_ncols=True)

    def tick(self, seconds: float) -> None:
        """During an epoch: advance a time-budget bar (at most every REFRESH_SECONDS)."""
        if self.bar is not None and self.max_seconds and seconds - self.shown >= REFRESH_SECONDS:
            self._advance_to(seconds)

    def epoch_done(self, epoch: int, seconds: float, **losses: str) -> None:
        if self.bar is None:
            return
        if self.max_seconds:
            # the epochs may end the run first: then their projected end is the bar's total
            projected = seconds / epoch * self.epochs
            self.bar.total = min(self.max_seconds, max(projected, seconds))
            self._advance_to(seconds)
            self.bar.set_postfix(epoch=f"{epoch}/{self.epochs}", **losses)
        else:
            self.bar.set_postfix(**losses)
            self.bar.update(1)

    def _advance_to(self, seconds: float) -> None:
        seconds = min(seconds, self.bar.total)
        self.bar.update(seconds - self.shown)
        self.shown = seconds

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
