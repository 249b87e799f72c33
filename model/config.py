"""The training configuration: one set of defaults (TrainConfig) and presets that override it.

TrainConfig's defaults are what `make` and `python -m model.train` train when nothing else is
said. A preset, presets/NAME.toml, is a plain TOML file of TrainConfig fields that override those
defaults (`python -m model.train --preset NAME`, `make PRESET=NAME`, the benchmarks); it may
`include = "OTHER"` to take every field it does not set itself from another preset. Options given
on the command line win over both.

Torch-free on purpose: the Makefile asks this module, before anything is built, for a preset's
artifact folder, corpus, teacher and files (`python -m model.config make-vars NAME`).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from core import contract

CELLS = ("rnn", "gru")
LR_SCHEDULES = ("exp", "cosine")
COUNT_WEIGHTINGS = ("none", "log", "sqrt", "linear")  # how corpus counts weight the sampling of names
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


@dataclass
class TrainConfig:
    """One training run: the corpus, the model's size and every training knob."""

    corpus: str = contract.default_path(contract.CORPUS)  # one name per line, optionally name<TAB>count (`make data`)
    title_case: bool = False  # title-case names, e.g. for an upper-case list (`make data`'s corpus needs none)
    # The GRU of the time-to-quality sweep on the census names (docs/results/sweep.md): the best
    # validation NLL for the training time of any cell and size it tried.
    hidden_size: int = 96
    num_layers: int = 1
    cell: str = "gru"
    dropout: float = 0.0
    epochs: int = 100000  # the time budget decides
    # 64 / 1e-2 with the cosine schedule: the sweep's best on the census names (it beat 128 and 256
    # names per step, and lr 0.02)
    batch_size: int = 64
    lr: float = 1e-2
    lr_decay: float = 1.0  # multiplied into the learning rate after every epoch ("exp" schedule only)
    # "exp": lr * lr_decay**epoch. "cosine": from lr down to COSINE_FLOOR * lr over the
    # max_seconds budget (wall clock), or over all epochs when there is no budget; lr_decay unused.
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    clip: float = 1.0
    patience: int = 0  # epochs without validation improvement before stopping; 0 = never
    val_fraction: float = 0.1
    # names drawn in proportion to the square root of their count: the best validation NLL per
    # person of none / log / sqrt (`make eval`), so the commonest names lead the n-best lists
    count_weighting: str = "sqrt"  # one of COUNT_WEIGHTINGS
    seed: int = 0
    # wall-clock budget for the training loop; 0 = none. It keeps a fresh `make` (venv, corpus,
    # training, exports, archives) within about 3 minutes on 2 cores; PRESET=ibge-single trains 300 s.
    max_seconds: float = 80.0
    samples_per_epoch: int = 0  # names drawn per epoch; 0 = the training-set size
    # Batches are cut from pools of this many batches' names sorted by length (0 or 1: no
    # sorting), then shuffled: a batch pads to its longest name, and the recurrence runs once
    # per padded position, so similar lengths per batch cut the steps. On the census names the
    # extra steps per second did not pay for the less random batches (docs/results/sweep-pools.md).
    length_pool: int = 0
    device: str = "cpu"
    # torch intra-op threads; 0 = torch's default. One: this GRU's matrix products are too small to
    # share out, and with more threads than free cores (a busy machine) torch's threads wait on each
    # other at every operation, which made training many times slower, not faster.
    threads: int = 1
    # An ensemble (model.members): this many models trained side by side, one process and one core
    # each, within the same max_seconds, and served as one step (model.ensemble); 1 = a single
    # model, 0 = one per usable core. Members differ in seed (seed, seed + 1, ...) and, when
    # member_weightings lists count weightings ("sqrt,none"), in those, taken in turn.
    members: int = 1
    member_weightings: str = ""
    # Distillation (model.distill): a checkpoint (an ensemble's, typically) whose next-character
    # distributions over the training names this model learns instead of the names' characters;
    # empty = train on the names. Its corpus, split and vocabulary must be this run's.
    teacher: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, allowed in (("cell", CELLS), ("lr_schedule", LR_SCHEDULES), ("count_weighting", COUNT_WEIGHTINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.members < 0:
            raise ValueError(f"members must be 0 (one per usable core) or a positive count, got {self.members}")
        for weighting in self.weightings():
            if weighting not in COUNT_WEIGHTINGS:
                raise ValueError(f"member_weightings must list values of {COUNT_WEIGHTINGS}, got {weighting!r}")
        if self.teacher and self.members != 1:
            raise ValueError("a distilled model (teacher) is a single model: members must be 1")

    def weightings(self) -> list[str]:
        """member_weightings as a list (empty: every member uses count_weighting)."""
        return [w.strip() for w in self.member_weightings.split(",") if w.strip()]

    def member_count(self) -> int:
        """How many models this run trains: members, or one per usable core when it is 0."""
        return self.members or usable_cores()


# cgroup v2's CPU limit of this process's group ("max 100000", or "200000 100000": two CPUs)
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores() -> int:
    """The cores this process may use: those of its CPU affinity, fewer when its cgroup's CPU
    quota allows less (a container started with --cpus=2 sees the host's cores in its affinity)."""
    import math
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or one this reading does not know
        pass
    return cores


# the fields a preset may set, with their types (`extra` is for code, not for preset files)
FIELD_TYPES = {f.name: type(f.default) for f in fields(TrainConfig) if f.name != "extra"}


class PresetError(ValueError):
    """A preset that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Preset:
    name: str
    config: TrainConfig  # TrainConfig's defaults with the preset's values
    values: dict  # what the preset sets, its includes' values merged in
    files: tuple[Path, ...]  # its file and every file it includes: a change to any retrains

    @property
    def corpus(self) -> str:
        return self.config.corpus

    @property
    def art(self) -> str:
        return artifact_dir(self.name)


def artifact_dir(preset: str | None) -> str:
    """The folder a preset's artifacts go to (each preset its own, so none overwrites another's)."""
    return f"{contract.ART_DIR}/{preset}" if preset else contract.ART_DIR


def known_presets(preset_dir: Path = PRESET_DIR) -> list[str]:
    return sorted(p.stem for p in Path(preset_dir).glob("*.toml"))


def _check_value(path: Path, key: str, value):
    kind = FIELD_TYPES[key]
    # TOML has no int/float/bool confusion of its own, but bool is an int in Python: refuse it
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if type(value) is kind:
        return value
    raise PresetError(f"{path}: {key} must be {kind.__name__}, got {value!r}")


def read_preset(name: str, preset_dir: Path = PRESET_DIR, _chain: tuple[str, ...] = ()) -> tuple[dict, tuple[Path, ...]]:
    """The values preset `name` sets (its includes' values under its own) and the files read."""
    preset_dir = Path(preset_dir)
    path = preset_dir / f"{name}.toml"
    if name in _chain:
        raise PresetError(f"{path}: circular include ({' -> '.join((*_chain, name))})")
    if not path.is_file():
        where = f"included by {preset_dir / _chain[-1]}.toml" if _chain else f"known: {', '.join(known_presets(preset_dir)) or 'none'}"
        raise PresetError(f"no preset {name!r} ({path}; {where})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None
    include = data.pop("include", None)
    values = {}
    for key, value in data.items():
        if key not in FIELD_TYPES:
            near = difflib.get_close_matches(key, FIELD_TYPES, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(FIELD_TYPES)})"
            raise PresetError(f"{path}: unknown key {key!r}{hint}")
        values[key] = _check_value(path, key, value)
    files: tuple[Path, ...] = (path,)
    if include is not None:
        if not isinstance(include, str):
            raise PresetError(f"{path}: include must be a preset name (a string), got {include!r}")
        base, base_files = read_preset(include, preset_dir, (*_chain, name))
        values, files = {**base, **values}, (path, *base_files)
    return values, files


def load_preset(name: str, preset_dir: Path = PRESET_DIR) -> Preset:
    """TrainConfig's defaults overridden by presets/NAME.toml (and what it includes)."""
    values, files = read_preset(name, preset_dir)
    try:
        config = replace(TrainConfig(), **values)
    except ValueError as exc:
        raise PresetError(f"{files[0]}: {exc}") from None
    return Preset(name, config, values, files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Presets for the Makefile (model/config.py).")
    sub = p.add_subparsers(dest="command", required=True)
    mv = sub.add_parser("make-vars", help="print: ART, CORPUS and TEACHER (each - when the preset sets none), "
                                          "the preset's files")
    mv.add_argument("name")
    mv.add_argument("--preset-dir", default=str(PRESET_DIR))
    args = p.parse_args(argv)
    try:
        preset = load_preset(args.name, Path(args.preset_dir))
    except PresetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(preset.art, preset.values.get("corpus", "-"), preset.values.get("teacher") or "-", *preset.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
