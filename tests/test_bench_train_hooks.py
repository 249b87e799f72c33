"""The two training hooks the benchmarks use: on_step (throughput, snapshots at fixed times)
and the cosine learning-rate schedule; the default training is unchanged by them."""

import itertools
import math

import pytest
import torch

from data.corpus import Entry, split
from model.train import COSINE_FLOOR, cosine_factor, train
from tests.conftest import NAMES, tiny_config


def test_on_step_reports_every_step_with_its_target_symbols():
    entries = [Entry(n) for n in NAMES]
    seen = []
    _, _, _metrics, history = train(entries, tiny_config(epochs=2, batch_size=8), progress=False,
                                   on_step=lambda info, model: seen.append(dict(info)))
    train_names = split(entries, 0.15)[0]
    per_epoch = math.ceil(len(train_names) / 8)
    assert [s["step"] for s in seen] == list(range(1, 2 * per_epoch + 1))
    assert [s["epoch"] for s in seen] == [1] * per_epoch + [2] * per_epoch
    # each epoch covers every training name once: its characters plus one end token each
    symbols = sum(len(e.name) + 1 for e in train_names)
    assert sum(s["targets"] for s in seen if s["epoch"] == 1) == symbols
    assert all(a["seconds"] <= b["seconds"] for a, b in itertools.pairwise(seen))
    assert seen[-1]["seconds"] <= history[-1]["seconds"]


def test_on_step_does_not_change_training():
    entries = [Entry(n) for n in NAMES]
    a = train(entries, tiny_config(epochs=2), progress=False)[0].state_dict()
    b = train(entries, tiny_config(epochs=2), progress=False, on_step=lambda info, model: None)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # exactly: the same run twice on one machine


def test_cosine_schedule_decays_from_lr_to_the_floor():
    assert cosine_factor(0.0) == 1.0 and cosine_factor(1.0) == pytest.approx(COSINE_FLOOR)
    assert cosine_factor(0.5) == pytest.approx((1 + COSINE_FLOOR) / 2) and cosine_factor(2.0) == cosine_factor(1.0)
    entries = [Entry(n) for n in NAMES]
    _, _, _, history = train(entries, tiny_config(epochs=4, lr=0.01, lr_schedule="cosine"), progress=False)
    lrs = [r["lr"] for r in history]  # the last step's rate of each epoch
    assert all(a > b for a, b in itertools.pairwise(lrs)) and lrs[-1] < 0.01 * 0.05
    _, _, _, history = train(entries, tiny_config(epochs=3, lr=0.01, lr_decay=0.5), progress=False)
    assert [r["lr"] for r in history] == pytest.approx([0.005, 0.0025, 0.00125])  # "exp", the default
    with pytest.raises(ValueError, match="lr_schedule"):
        train(entries, tiny_config(lr_schedule="step"), progress=False)
