"""The training bar counts against the limit that will stop the run, so its ETA is true."""

from __future__ import annotations

import io
import re

from tqdm import tqdm

from data.corpus import Entry
from model.progress import TrainingProgress
from model.train import train
from tests.conftest import NAMES, tiny_config


class Clock:
    """Drives TrainingProgress with chosen times instead of a real run."""

    def __init__(self):
        self.out = io.StringIO()

    def bar(self, **kwargs):
        return tqdm(file=self.out, mininterval=0, **kwargs)

    def last_line(self) -> str:
        return re.split(r"[\r\n]", self.out.getvalue().strip())[-1]


def test_a_time_budget_bar_counts_seconds_of_the_budget():
    clock = Clock()
    progress = TrainingProgress(100_000, 300.0, make_bar=clock.bar)
    progress.tick(30.0)
    progress.epoch_done(5, 60.0, train="1.900", val="1.880")
    line = clock.last_line()
    assert "60/300 s" in line and "100000" not in line.split("epoch=")[0]
    assert "epoch=5/100000" in line and "val=1.880" in line
    assert progress.bar.total == 300.0  # 100,000 epochs of 12 s would take far longer: the budget rules
    progress.close()


def test_epochs_that_end_before_the_budget_become_the_bar_total():
    clock = Clock()
    progress = TrainingProgress(10, 300.0, make_bar=clock.bar)
    progress.epoch_done(2, 8.0)  # 4 s an epoch: 10 epochs end at 40 s, long before 300
    assert progress.bar.total == 40.0
    progress.epoch_done(10, 41.0)
    assert progress.bar.n == progress.bar.total  # never past 100 %


def test_without_a_budget_the_bar_counts_epochs():
    clock = Clock()
    progress = TrainingProgress(30, 0.0, make_bar=clock.bar)
    progress.tick(5.0)  # no time budget: ticks do not move an epoch bar
    progress.epoch_done(1, 5.0, train="2.000")
    assert progress.bar.total == 30 and progress.bar.n == 1
    assert "1/30" in clock.last_line()


def test_training_with_a_budget_shows_seconds_on_its_bar(capsys):
    train([Entry(n) for n in NAMES], tiny_config(epochs=100_000, max_seconds=2.0), progress=True)
    err = capsys.readouterr().err
    final = re.split(r"[\r\n]", err.strip())[-1]
    assert re.search(r"training: 100%.*\| 2/2 s \[", final), final
    assert "100000" not in final.split("epoch=")[0], final
