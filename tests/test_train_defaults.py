"""One set of training defaults: TrainConfig's. The command line takes every default from it, and
the knob tables of README.md and docs/training.md state the same values."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from model.config import FIELD_TYPES, TrainConfig
from model.train import build_parser, parse_args

ROOT = Path(__file__).resolve().parent.parent


def test_the_command_line_defaults_are_trainconfig():
    cfg, _ = parse_args([])
    assert cfg == TrainConfig()
    dests = {action.dest: action for action in build_parser()._actions}
    for f in fields(TrainConfig):  # every field has an option (so make, presets and the CLI agree)
        if f.name != "extra":
            assert f.name in dests, f"no model.train option for TrainConfig.{f.name}"
            assert dests[f.name].default == getattr(TrainConfig(), f.name), f.name
    assert set(FIELD_TYPES) <= set(dests)


def knob_fields() -> dict[str, str]:
    """make knob -> TrainConfig field, from the Makefile's TRAIN_KNOBS table and model.train's options."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    table = re.search(r"^TRAIN_KNOBS\s*:=(.*)$", makefile, re.MULTILINE).group(1).split()
    option_dest = {opt: action.dest for action in build_parser()._actions for opt in action.option_strings}
    out = {knob: option_dest[f"--{option}"] for knob, option in (pair.split(":") for pair in table)}
    return {**out, "CORPUS": "corpus", "TITLE_CASE": "title_case"}


def documented_defaults(page: Path) -> dict[str, str]:
    """knob -> default as a knob table row states it: | `A`, `B` | `1`, `2` | meaning |"""
    found = {}
    for line in page.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        knobs = re.findall(r"`([A-Z_]+)`", cells[0])
        values = [v.strip() for v in cells[1].split(",")]
        if len(knobs) == len(values):
            found.update(zip(knobs, values))
    return found


def as_doc(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


@pytest.mark.parametrize("page", ["README.md", "docs/training.md"])
def test_the_documented_defaults_are_trainconfig(page):
    documented = documented_defaults(ROOT / page)
    knobs = knob_fields()
    if page == "docs/training.md":  # every knob; README.md has the main ones
        assert set(knobs) <= set(documented), "a knob missing from the table"
    assert len(set(knobs) & set(documented)) >= 10
    default = TrainConfig()
    for knob, field in knobs.items():
        if knob in documented:
            stated = re.sub(r"[`\s]|\(.*\)", "", documented[knob])
            assert stated == as_doc(getattr(default, field)), f"{page}: {knob} says {documented[knob]}"


def test_the_training_benchmark_measures_the_default_model():
    """bench's training section takes its model from TrainConfig unless told otherwise."""
    from bench.__main__ import build_parser as bench_parser

    args = bench_parser().parse_args([])
    assert (args.train_hidden, args.train_cell) == (TrainConfig().hidden_size, TrainConfig().cell)
    assert str(TrainConfig().batch_size) in args.train_batches.split(",")
